"""Page contents: real file bytes, deterministic, distinct per trace and per version."""

from __future__ import annotations

import pytest

from tmem.workload.content import ContentMap, Corpus
from tmem.workload.errors import WorkloadError


@pytest.fixture()
def files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "one").write_bytes(bytes(range(256)) * 20)  # 5120 bytes: two pages, the second padded
    (b / "two").write_bytes(b"x" * 4096)
    (a / "three").write_bytes(b"y" * 100)
    return [a, b]


def test_corpus_pages_are_the_files_bytes_in_a_fixed_order(files):
    corpus = Corpus(100, files)
    try:
        # Round robin over the roots, files sorted: a/one, b/two, a/three.
        assert corpus.pages == 4
        assert corpus.page(0) == (bytes(range(256)) * 16)
        assert corpus.page(1) == (bytes(range(256)) * 4).ljust(4096, b"\0")
        assert corpus.page(2) == b"x" * 4096
        assert corpus.page(3) == b"y" * 100 + bytes(3996)
        assert corpus.page(4) == corpus.page(0)  # wraps around
    finally:
        corpus.close()


def test_no_readable_files_is_a_clear_error(tmp_path):
    with pytest.raises(WorkloadError):
        Corpus(10, [tmp_path])


def test_content_map_is_deterministic_and_keeps_traces_apart():
    pages = {"t1": [10, 11, 500], "t2": [10]}
    one, two = ContentMap.build(pages), ContentMap.build(pages)
    try:
        assert one.page("t1", 11) == two.page("t1", 11)
        assert one.page("t1", 11, version=1) == two.page("t1", 11, version=1)
        numbers = {one.number("t1", p) for p in (10, 11, 500)} | {one.number("t2", 10)}
        assert len(numbers) == 4  # no two pages of the run share content by construction
        assert one.number("t1", 10, 1) not in numbers  # a write brings new content
        assert one.number("t1", 11) == one.number("t1", 10) + 1  # neighbours stay neighbours
        assert not one.wrapped
        with pytest.raises(WorkloadError):
            one.page("t1", 12)
    finally:
        one.corpus.close()
        two.corpus.close()

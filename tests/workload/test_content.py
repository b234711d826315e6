"""Page contents: the shipped corpus, deterministic, distinct per trace and per version."""

from __future__ import annotations

import hashlib
import lzma

import pytest

from tmem.workload.content import ContentMap, Corpus, _corpus_bytes, manifest
from tmem.workload.errors import WorkloadError


def test_the_shipped_corpus_matches_its_manifest_and_provenance():
    info = manifest()
    body = _corpus_bytes()
    assert len(body) == info["pages"] * info["page_size"] == 2048 * 4096
    assert hashlib.sha256(body).hexdigest() == info["sha256"]
    assert sum(kind["pages"] for kind in info["kinds"].values()) == info["pages"]
    assert sum(n for _, _, n in info["runs"]) == info["pages"]
    assert all(kind["licence"] for kind in info["kinds"].values())
    # Real pages: neither random nor trivially compressible, as a whole.
    ratio = len(body) / len(lzma.compress(body, preset=0))
    assert 1.5 < ratio < 10


def test_numbers_get_distinct_pages_with_the_corpus_bytes():
    corpus = Corpus()
    a, b = corpus.page(5), corpus.page(5 + corpus.pages)
    assert a != b and a[8:] == b[8:]  # the same corpus page, stamped apart
    assert a[:8] == (5).to_bytes(8, "little")
    assert a[8:] == _corpus_bytes()[5 * 4096 + 8 : 6 * 4096]
    assert len(corpus.page(123456)) == 4096


def test_pages_filled_with_one_word_stay_as_they_are():
    corpus = Corpus()
    body = _corpus_bytes()
    filled = [
        n
        for n in range(corpus.pages)
        if body[n * 4096 : n * 4096 + 8] * 512 == body[n * 4096 : (n + 1) * 4096]
    ]
    assert filled, "the corpus has a page of one repeated word, as real memory does"
    assert corpus.page(filled[0] + corpus.pages) == body[filled[0] * 4096 : (filled[0] + 1) * 4096]


def test_other_page_sizes_cut_the_same_bytes():
    assert Corpus(512).page(3)[8:] == _corpus_bytes()[3 * 512 + 8 : 4 * 512]
    assert Corpus(512).pages == 8 * Corpus().pages


def test_content_map_is_deterministic_and_keeps_traces_apart():
    pages = {"t1": [10, 11, 500], "t2": [10]}
    one, two = ContentMap.build(pages), ContentMap.build(pages)
    assert one.page("t1", 11) == two.page("t1", 11)
    assert one.page("t1", 11, version=1) == two.page("t1", 11, version=1)
    numbers = {one.number("t1", p) for p in (10, 11, 500)} | {one.number("t2", 10)}
    assert len(numbers) == 4  # no two pages of the run share content by construction
    assert one.number("t1", 10, 1) not in numbers  # a write brings new content
    assert one.page("t1", 10, 1) != one.page("t1", 10)
    assert one.number("t1", 11) == one.number("t1", 10) + 1  # neighbours stay neighbours
    contents = {one.page("t1", p) for p in (10, 11, 500)} | {one.page("t2", 10)}
    assert len(contents) == 4
    with pytest.raises(WorkloadError):
        one.page("t1", 12)

"""cleancache asks tmem only for pages a private pool may hold, and reads the same from disk.

Every test runs one sequence of file operations twice: as the cache runs, and
with ``FileRecord.may_hold`` always True (tmem asked for every page, as before
the cache kept track).  Skipped gets and flushes must be ones that would have
missed or found nothing: the same pages come from the disk, from tmem and from
the private cache.  The host keeps exact LRU (``order="lru"``): the adaptive
order counts a get's miss in its shadows, so the calls it is not sent would
move its margin, which is not what these tests are about.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import tmem
from tmem.frontends import CleanCache
from tmem.frontends.cleancache import FileRecord

PS = 4096
READS = ("reads", "private_hits", "succ_gets", "disk_reads")


def page(seed: int, i: int) -> bytes:
    return (b"%06d:%06d|" % (seed, i)) * 4 + bytes(PS - 56)


def make_files(root: Path, count: int, pages: int) -> list[Path]:
    paths = []
    for k in range(count):
        path = root / f"f{k}"
        path.write_bytes(b"".join(page(k, i) for i in range(pages)))
        paths.append(path)
    return paths


def mixed_run(root: Path, seed: int, monkeypatch: pytest.MonkeyPatch, ask_all: bool) -> Any:
    """Random reads, writes and truncations over a few files, through a cache of 4 pages
    in front of a host that holds 24: the host evicts, files are closed and forgotten."""
    if ask_all:
        monkeypatch.setattr(FileRecord, "may_hold", lambda self, index: True)
    host = tmem.Host(24 * (PS + 1024), compress=None, order="lru")
    client = host.connect("guest")
    paths = make_files(root, 5, 12)
    rng = random.Random(seed)
    model = {p: bytearray(p.read_bytes()) for p in paths}
    with CleanCache(client, cache_pages=4) as cache:
        cache.enable(root)
        for _ in range(400):
            path = rng.choice(paths)
            with cache.open(path, "r+b") as f:
                offset = rng.randrange(12) * PS + rng.choice((0, 100))
                f.seek(offset)
                roll = rng.random()
                if roll < 0.8:
                    want = bytes(model[path][offset : offset + 2 * PS])
                    assert f.read(2 * PS) == want
                elif roll < 0.95:
                    data = bytes([rng.randrange(256)]) * rng.choice((100, PS))
                    f.write(data)
                    model[path][offset : offset + len(data)] = data
                else:
                    size = rng.randrange(13) * PS
                    f.truncate(size)
                    del model[path][size:]
                    model[path].extend(bytes(12 * PS - size))
                    f.truncate(12 * PS)
        return cache.stats()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_skipped_calls_would_have_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mine = mixed_run(tmp_path / "a", seed, monkeypatch, ask_all=False)
    every = mixed_run(tmp_path / "b", seed, monkeypatch, ask_all=True)
    assert {k: mine[k] for k in READS} == {k: every[k] for k in READS}
    assert mine["skipped_gets"] > 0 and every["skipped_gets"] == 0
    assert mine["failed_gets"] + mine["skipped_gets"] == every["failed_gets"]
    assert mine["invalidates"] <= every["invalidates"]  # no flush of a page never offered


def test_a_write_to_a_page_never_offered_flushes_nothing(tmp_path: Path) -> None:
    host = tmem.Host(64 << 20, compress=None)
    client = host.connect("guest")
    (path,) = make_files(tmp_path, 1, 4)
    with CleanCache(client, cache_pages=1) as cache:
        cache.enable(tmp_path)
        with cache.open(path, "r+b") as f:
            f.seek(PS)
            f.write(b"x" * PS)  # page 1 was never read: nothing of it is in tmem
            f.seek(0)
            assert f.read() == page(0, 0) + b"x" * PS + page(0, 2) + page(0, 3)
        stats = cache.stats()
    assert stats["invalidates"] == 0 and client.stats()["flushes"] == 0
    assert stats["skipped_gets"] == 3 and stats["private_hits"] + stats["succ_gets"] == 1


def test_a_forgotten_file_is_asked_for_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed file's record goes (only files with private pages are remembered), and
    with it what the cache knew: its pages in tmem must still be asked for."""
    host = tmem.Host(64 << 20, compress=None, order="lru")
    paths = make_files(tmp_path, 30, 2)
    with CleanCache(host.connect("guest"), cache_pages=4) as cache:
        cache.enable(tmp_path)
        for path in paths:
            with cache.open(path) as f:
                f.read()
        assert cache.stats()["files"] <= 4
        assert cache.stats()["skipped_gets"] == 60  # every first read: never offered
        with cache.open(paths[0]) as f:
            assert f.read() == page(0, 0) + page(0, 1)
        assert cache.stats()["succ_gets"] == 2 and cache.stats()["disk_reads"] == 60


def test_shared_pools_are_always_asked(tmp_path: Path) -> None:
    """Another process may have put any page into a shared pool."""
    import uuid

    host = tmem.Host(64 << 20, compress=None)
    shared = uuid.uuid4()
    for name in ("p1", "p2"):
        host.authorize_shared(name, shared)
    paths = make_files(tmp_path, 1, 8)
    first = CleanCache(host.connect("p1"), cache_pages=1)
    second = CleanCache(host.connect("p2"), cache_pages=1)
    assert first.enable(tmp_path, shared) and second.enable(tmp_path, shared)
    with first.open(paths[0]) as f:
        f.read()  # 7 pages offered to the shared pool
    with second.open(paths[0]) as f:
        assert f.read() == b"".join(page(0, i) for i in range(8))
    stats = second.stats()
    assert stats["skipped_gets"] == 0 and stats["succ_gets"] == 7
    first.close()
    second.close()

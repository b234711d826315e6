"""cleancache: a private page cache whose victims go to tmem; never a stale byte."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

import tmem
from tests.frontends.conftest import LosableClient
from tmem.frontends import CleanCache

PS = 4096


def pattern(n: int, seed: int = 1) -> bytes:
    """Compressible, position-dependent bytes: every page differs from the others."""
    return b"".join((b"%08d:%06d|" % (seed, i)) * 4 + bytes(PS - 64) for i in range(-(-n // PS)))[
        :n
    ]


def make_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def counted_once(stats: dict[str, int]) -> bool:
    return stats["reads"] == stats["private_hits"] + stats["succ_gets"] + stats["disk_reads"]


def test_reads_in_any_chunking_return_the_files_bytes(tmp_path: Path, client: Any) -> None:
    data = pattern(10 * PS + 777)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=3) as cache:
        cache.enable(tmp_path)
        for chunk in (1, 100, PS - 1, PS, PS + 1, 3 * PS + 5, 1 << 20):
            with cache.open(path) as f:
                got = b"".join(iter(lambda f=f, c=chunk: f.read(c), b""))
            assert got == data
        with cache.open(path) as f:
            f.seek(PS * 2 + 10)
            buf = bytearray(PS)
            assert f.readinto(buf) == PS
            assert bytes(buf) == data[2 * PS + 10 : 3 * PS + 10]
            assert f.tell() == 3 * PS + 10
            assert f.seek(-5, os.SEEK_END) == len(data) - 5
            assert f.read() == data[-5:]
            assert f.read() == b""
        assert counted_once(cache.stats())


def test_evicted_pages_come_back_from_tmem_instead_of_the_disk(tmp_path: Path, client: Any) -> None:
    data = pattern(8 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=2) as cache:
        cache.enable(tmp_path)
        for _ in range(3):
            with cache.open(path) as f:
                assert f.read() == data
        stats = cache.stats()
    assert stats["disk_reads"] == 8  # only the first pass touched the disk
    assert stats["succ_gets"] == 16
    assert stats["puts"] >= 16 and stats["failed_puts"] == 0
    assert counted_once(stats)


def test_private_cache_serves_repeated_reads_and_stays_bounded(tmp_path: Path) -> None:
    data = pattern(4 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(None, cache_pages=4) as cache, cache.open(path) as f:
        f.read()
        f.seek(0)
        f.read()
        stats = cache.stats()
        assert (stats["disk_reads"], stats["private_hits"]) == (4, 4)
        assert stats["succ_gets"] == stats["failed_gets"] == stats["puts"] == 0
        f.seek(0)
        with cache.open(make_file(tmp_path, "g", pattern(3 * PS, 2))) as g:
            g.read()
        assert cache.stats()["private_pages"] == 4


def test_without_enable_tmem_is_never_asked(tmp_path: Path, client: Any) -> None:
    data = pattern(6 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=1) as cache:
        for _ in range(2):
            with cache.open(path) as f:
                assert f.read() == data
        stats = cache.stats()
    assert stats["puts"] == stats["succ_gets"] == stats["failed_gets"] == 0
    assert stats["disk_reads"] == 12


def test_writes_through_the_cache_are_read_back_from_every_layer(
    tmp_path: Path, client: Any
) -> None:
    data = bytearray(pattern(6 * PS))
    path = make_file(tmp_path, "f", bytes(data))
    with CleanCache(client, cache_pages=2) as cache:
        cache.enable(tmp_path)
        with cache.open(path, "r+b") as f:
            assert f.read() == data  # pages 0..3 now in tmem, 4..5 private
            for offset, chunk in ((10, b"A" * 50), (PS - 3, b"B" * 9), (5 * PS, b"C" * PS)):
                f.seek(offset)
                assert f.write(chunk) == len(chunk)
                data[offset : offset + len(chunk)] = chunk
            f.seek(0)
            assert f.read() == data
            f.seek(0)
            assert f.read() == data
        assert path.read_bytes() == data
        assert cache.stats()["disk_writes"] == 4


def test_appending_and_writing_past_the_end_read_back_holes_as_zeros(
    tmp_path: Path, client: Any
) -> None:
    path = make_file(tmp_path, "f", b"start")
    with CleanCache(client, cache_pages=2) as cache:
        cache.enable(tmp_path)
        with cache.open(path, "r+b") as f:
            assert f.read() == b"start"
            f.seek(3 * PS + 7)
            f.write(b"end")
        with cache.open(path, "ab") as f:
            f.write(b"!")
        with cache.open(path) as f:
            got = f.read()
    assert got == path.read_bytes() == b"start" + bytes(3 * PS + 2) + b"end!"


def test_truncation_flushes_the_pages_past_the_new_end(tmp_path: Path, client: Any) -> None:
    data = pattern(8 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=2) as cache:
        cache.enable(tmp_path)
        with cache.open(path, "r+b") as f:
            f.read()
            assert f.truncate(3 * PS + 100) == 3 * PS + 100
            f.seek(0)
            assert f.read() == data[: 3 * PS + 100]
            f.truncate(8 * PS)  # grows again: the cut bytes must read as zeros
            f.seek(0)
            assert f.read() == data[: 3 * PS + 100] + bytes(5 * PS - 100)
        with cache.open(path, "wb") as f:  # truncated on open
            f.write(b"new")
        with cache.open(path) as f:
            assert f.read() == b"new"


def test_a_cached_page_cut_by_truncation_reads_zeros_when_the_file_grows(
    tmp_path: Path, client: Any
) -> None:
    data = pattern(2 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=8) as cache, cache.open(path, "r+b") as f:
        cache.enable(tmp_path)
        assert f.read() == data  # both pages in the private cache
        f.truncate(PS + 10)
        f.seek(2 * PS)
        f.write(b"end")  # the cut part of page 1 is now a hole inside the file
        f.seek(0)
        assert f.read() == data[: PS + 10] + bytes(PS - 10) + b"end"
        assert cache.stats()["private_hits"] == 2


def modify_behind(path: Path, offset: int, data: bytes, stamp: list[int]) -> None:
    """Change the file without the cache, and give it a new modification time.

    Setting an unused mtime makes the change visible even on a file system
    whose timestamps are too coarse to tell two quick writes apart.
    """
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    stamp[0] += 1
    os.utime(path, ns=(stamp[0], stamp[0]))


def test_a_file_changed_behind_the_cache_is_flushed_before_it_is_served(
    tmp_path: Path, client: Any
) -> None:
    data = bytearray(pattern(5 * PS))
    path = make_file(tmp_path, "f", bytes(data))
    stamp = [10**9]
    with CleanCache(client, cache_pages=2) as cache:
        cache.enable(tmp_path)
        with cache.open(path) as f:
            assert f.read() == data  # pages in tmem and in the private cache
            modify_behind(path, 0, b"X" * (5 * PS), stamp)
            f.seek(0)
            assert f.read() == b"X" * (5 * PS)
        modify_behind(path, PS, b"Y" * 10, stamp)  # while no file is open
        with cache.open(path) as f:
            assert f.read() == b"X" * PS + b"Y" * 10 + b"X" * (4 * PS - 10)
        stats = cache.stats()
    assert stats["stale_files"] == 2
    assert stats["invalidates"] >= 2


def test_unlink_and_replacing_rename_flush_the_old_file(tmp_path: Path, client: Any) -> None:
    old, new = pattern(3 * PS, 1), pattern(3 * PS, 2)
    with CleanCache(client, cache_pages=1) as cache:
        cache.enable(tmp_path)
        a = make_file(tmp_path, "a", old)
        with cache.open(a) as f:
            assert f.read() == old
        cache.unlink(a)
        assert not a.exists()
        make_file(tmp_path, "b", new)
        make_file(tmp_path, "a", old)
        with cache.open(a) as f:
            assert f.read() == old
        cache.rename(tmp_path / "b", a)  # a is replaced by b's content
        with cache.open(a) as f:
            assert f.read() == new
        cache.rename(a, tmp_path / "c")
        with cache.open(tmp_path / "c") as f:
            assert f.read() == new
        assert cache.stats()["invalidates"] >= 2


def test_shared_pool_lets_an_authorized_second_client_hit_the_first_ones_pages(
    tmp_path: Path, harness: Any
) -> None:
    data = pattern(6 * PS)
    path = make_file(tmp_path, "f", data)
    fs_uuid = uuid.uuid4()
    for name in ("p1", "p2"):
        harness.admin.authorize_shared(name, fs_uuid)
    one = CleanCache(harness.connect("p1"), cache_pages=1)
    two = CleanCache(harness.connect("p2"), cache_pages=1)
    try:
        assert one.enable(tmp_path, shared_uuid=fs_uuid) is True
        assert two.enable(tmp_path, shared_uuid=fs_uuid) is True
        with one.open(path) as f:
            assert f.read() == data
        with two.open(path) as f:
            assert f.read() == data
        assert two.stats()["succ_gets"] == 5  # the pages the first cache evicted
        assert two.stats()["disk_reads"] == 1
    finally:
        one.close()
        two.close()


def test_a_write_to_a_shared_file_flushes_the_old_objects_pages_from_tmem(
    tmp_path: Path, harness: Any
) -> None:
    data = pattern(6 * PS)
    path = make_file(tmp_path, "f", data)
    fs_uuid = uuid.uuid4()
    harness.admin.authorize_shared("p1", fs_uuid)
    with CleanCache(harness.connect("p1"), cache_pages=1) as cache:
        assert cache.enable(tmp_path, shared_uuid=fs_uuid) is True
        with cache.open(path, "r+b") as f:
            assert f.read() == data
            assert harness.admin.stats()["pages"] == 5  # the pages the private cache let go
            f.seek(0)
            f.write(b"x")  # the file's new generation: a new object id
        assert harness.admin.stats()["pages"] == 0  # the old object is gone for every sharer
        with cache.open(path) as f:
            assert f.read() == b"x" + data[1:]


def test_shared_pool_without_authorization_falls_back_to_a_private_pool(
    tmp_path: Path, client: Any
) -> None:
    with CleanCache(client, cache_pages=1) as cache:
        assert cache.enable(tmp_path, shared_uuid=uuid.uuid4()) is False
        data = pattern(3 * PS)
        path = make_file(tmp_path, "f", data)
        for _ in range(2):
            with cache.open(path) as f:
                assert f.read() == data
        assert cache.stats()["succ_gets"] == 3


def test_a_host_that_rejects_every_page_still_gives_correct_data(tmp_path: Path) -> None:
    host = tmem.Host(1 << 20)
    client = host.connect("c")
    host.set_client("c", frozen=True)
    data = pattern(6 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=1) as cache:
        cache.enable(tmp_path)
        for _ in range(2):
            with cache.open(path) as f:
                assert f.read() == data
        stats = cache.stats()
    assert stats["failed_puts"] == stats["puts"] > 0
    assert stats["succ_gets"] == 0 and stats["disk_reads"] == 12


def test_losing_the_host_falls_back_to_the_disk(tmp_path: Path, client: Any) -> None:
    losable = LosableClient(client)
    data = pattern(5 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(losable, cache_pages=1) as cache:
        cache.enable(tmp_path)
        with cache.open(path) as f:
            assert f.read() == data
            losable.lose()
            f.seek(0)
            assert f.read() == data
            f.seek(0)
            assert f.read() == data
        stats = cache.stats()
    assert stats["host_lost"] == 1 and stats["pools"] == 0
    assert counted_once(stats)


def test_bad_arguments_raise_tmem_errors(tmp_path: Path) -> None:
    with pytest.raises(tmem.InvalidArgument):
        CleanCache(None, cache_pages=0)
    with pytest.raises(tmem.InvalidArgument):
        CleanCache(None, cache_pages=4, page_size=1000)
    cache = CleanCache(None, cache_pages=4)
    path = make_file(tmp_path, "f", b"abc")
    for mode in ("r", "rt", "rbb", "rwb", "qb", 3):
        with pytest.raises(tmem.InvalidArgument):
            cache.open(path, mode)  # type: ignore[arg-type]
    with cache.open(path) as f:
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"x")
        with pytest.raises(tmem.InvalidArgument):
            f.seek(-1)
    cache.close()
    with pytest.raises(tmem.InvalidArgument):
        cache.open(path)


def test_pages_another_client_pushes_out_are_read_from_disk(tmp_path: Path, harness: Any) -> None:
    data = pattern(16 * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(harness.connect("victim"), cache_pages=1) as cache:
        cache.enable(tmp_path)
        with cache.open(path) as f:
            assert f.read() == data  # 15 pages now in tmem
        harness.admin.set_capacity(40 * PS)
        other = harness.connect("other")
        pool = other.new_pool(persistent=True)
        for i in range(40):
            other.put_page(pool, 1, i, pattern(PS, 100 + i))  # evicts the cache's pages
        with cache.open(path) as f:
            assert f.read() == data
        stats = cache.stats()
    assert stats["failed_gets"] > 0
    assert stats["disk_reads"] > 16


def test_closed_files_are_forgotten_yet_found_again_in_tmem(tmp_path: Path, client: Any) -> None:
    files = [make_file(tmp_path, f"f{i}", pattern(2 * PS, i)) for i in range(30)]
    stamp = [10**9]
    with CleanCache(client, cache_pages=4) as cache:
        cache.enable(tmp_path)
        for path in files:
            with cache.open(path) as f:
                f.read()
        assert cache.stats()["files"] <= 4  # only files with private pages are remembered
        with cache.open(files[0]) as f:
            assert f.read() == pattern(2 * PS, 0)
        assert cache.stats()["succ_gets"] == 2  # same file, same object id: tmem had it
        modify_behind(files[1], 0, pattern(2 * PS, 99), stamp)
        with cache.open(files[1]) as f:
            assert f.read() == pattern(2 * PS, 99)  # a changed file gets a new object id
        assert cache.stats()["succ_gets"] == 2

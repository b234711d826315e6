"""Through a real daemon: when it goes away the frontends report or survive the loss."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import DaemonHarness
from tmem.frontends import CleanCache, Frontswap, PagesLost

PS = 4096


def page(slot: int) -> bytes:
    return (b"%06d" % slot) * (PS // 6) + bytes(PS % 6)


@pytest.fixture
def daemon() -> Iterator[DaemonHarness]:
    harness = DaemonHarness(64 << 20, compress=None, dedup=None)
    try:
        yield harness
    finally:
        harness.close()


def stop(daemon: DaemonHarness) -> None:
    daemon.server.stop()
    daemon._thread.join(10)


def test_frontswap_names_the_pages_a_stopped_daemon_took_with_it(
    tmp_path: Path, daemon: DaemonHarness
) -> None:
    swap = Frontswap(daemon.connect("swapper"), tmp_path / "swap", slots=30)
    for slot in range(30):
        swap.store(slot, page(slot))
    swap.shrink(20)  # ten pages are safe in the swap file
    stop(daemon)
    with pytest.raises(PagesLost) as info:
        for slot in range(30):
            assert swap.load(slot) == page(slot)
    assert len(info.value.slots) == 20
    safe = sorted(set(range(30)) - set(info.value.slots))
    assert [swap.load(s) for s in safe] == [page(s) for s in safe]
    swap.store(info.value.slots[0], page(99))  # the swap file takes it now
    assert swap.load(info.value.slots[0]) == page(99)
    swap.close()


def test_frontswap_with_write_behind_loses_nothing_when_the_daemon_stops(
    tmp_path: Path, daemon: DaemonHarness
) -> None:
    swap = Frontswap(daemon.connect("swapper"), tmp_path / "swap", slots=30, write_behind=True)
    for slot in range(30):
        swap.store(slot, page(slot))
    assert swap.sync(timeout=30)
    stop(daemon)
    assert [swap.load(s) for s in range(30)] == [page(s) for s in range(30)]
    assert swap.lost_slots() == ()
    swap.close()


def test_cleancache_reads_on_from_the_disk_when_the_daemon_stops(
    tmp_path: Path, daemon: DaemonHarness
) -> None:
    data = b"".join(page(i) for i in range(6))
    path = tmp_path / "f"
    path.write_bytes(data)
    cache = CleanCache(daemon.connect("reader"), cache_pages=2)
    cache.enable(tmp_path)
    with cache.open(path) as f:
        assert f.read() == data
        f.seek(0)
        assert f.read() == data
        assert cache.stats()["succ_gets"] > 0
        stop(daemon)
        f.seek(0)
        assert f.read() == data
    assert cache.stats()["host_lost"] == 1
    cache.close()

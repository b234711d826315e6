"""Self-ballooning cleancache: a shrinking working set moves pages into tmem and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.frontends.test_cleancache import PS, make_file, pattern
from tmem.control import BalloonTunables
from tmem.errors import InvalidArgument
from tmem.frontends import CleanCache, SelfBalloon

PAGES = 256


def read_pages(handle: Any, data: bytes, pages: range) -> None:
    for i in pages:
        handle.seek(i * PS)
        assert handle.read(PS) == data[i * PS : (i + 1) * PS], f"wrong page {i}"


def test_a_shrinking_working_set_moves_pages_to_tmem_and_back(tmp_path: Path, harness: Any) -> None:
    client = harness.connect("guest")
    data = pattern(PAGES * PS)
    path = make_file(tmp_path, "f", data)
    with CleanCache(client, cache_pages=PAGES) as cache, cache.open(path) as handle:
        cache.enable(path)
        balloon = SelfBalloon(cache, BalloonTunables(downhysteresis=2, min_usable=8))
        read_pages(handle, data, range(PAGES))  # everything private, once from disk
        assert balloon.step() == PAGES
        for _ in range(12):  # the working set shrinks to 32 pages
            read_pages(handle, data, range(32))
            balloon.step()
        assert 32 <= cache.cache_pages <= 33
        assert cache.stats()["private_pages"] == cache.cache_pages
        in_tmem = client.stats()["pages"]
        assert in_tmem >= PAGES - 33  # the cold pages went to the host
        disk = cache.stats()["disk_reads"]
        read_pages(handle, data, range(PAGES))  # the whole file again: tmem answers
        stats = cache.stats()
        assert stats["disk_reads"] == disk
        assert stats["succ_gets"] >= PAGES - 33
        assert balloon.step() == PAGES  # so many refaults: the cache grows back at once
        read_pages(handle, data, range(PAGES))  # refilled from tmem
        hits = cache.stats()["private_hits"]
        read_pages(handle, data, range(PAGES))
        assert cache.stats()["private_hits"] - hits == PAGES  # all private again
        assert cache.stats()["disk_reads"] == disk


def test_a_cgroup_with_no_room_caps_the_cache_at_once(tmp_path: Path, harness: Any) -> None:
    client = harness.connect("guest")
    data = pattern(64 * PS)
    path = make_file(tmp_path, "f", data)
    free = [1 << 30]
    with CleanCache(client, cache_pages=64) as cache, cache.open(path) as handle:
        cache.enable(path)
        balloon = SelfBalloon(cache, headroom=lambda: free[0], reserved=16 * PS)
        read_pages(handle, data, range(64))
        assert balloon.step() == 64
        free[0] = 4 * PS  # 12 pages short of the reserve: 12 pages must go now
        assert balloon.step() == 64 - 12
        assert client.stats()["pages"] == 12
        read_pages(handle, data, range(64))


def test_the_thread_steps_and_stops(tmp_path: Path, harness: Any) -> None:
    client = harness.connect("guest")
    with CleanCache(client, cache_pages=64) as cache:
        balloon = SelfBalloon(cache, BalloonTunables(interval=0.01, min_usable=4))
        balloon.start()
        try:
            import time

            deadline = time.monotonic() + 10
            while balloon.steps < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            balloon.stop()
        assert balloon.steps >= 3 and cache.cache_pages < 64  # idle: it shrank


def test_bad_reserve_is_refused(harness: Any) -> None:
    with (
        CleanCache(harness.connect("guest"), cache_pages=8) as cache,
        pytest.raises(InvalidArgument, match="reserved"),
    ):
        SelfBalloon(cache, reserved=-1)

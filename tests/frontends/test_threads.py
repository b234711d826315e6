"""Threads sharing one frontend (as Dask's worker threads do) still get exact data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.threads import run_threads
from tmem.frontends import CleanCache, Frontswap

PS = 4096


def test_threads_reading_one_cache_see_the_files_bytes(tmp_path: Path, client: Any) -> None:
    data = random.Random(3).randbytes(40 * PS)
    path = tmp_path / "f"
    path.write_bytes(data)
    with CleanCache(client, cache_pages=8) as cache:
        cache.enable(tmp_path)

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            with cache.open(path) as f:
                for _ in range(200):
                    offset, length = rng.randrange(len(data)), rng.randrange(1, 3 * PS)
                    f.seek(offset)
                    assert f.read(length) == data[offset : offset + length]

        run_threads(reader)
        stats = cache.stats()
    assert stats["succ_gets"] > 0
    assert stats["reads"] == stats["private_hits"] + stats["succ_gets"] + stats["disk_reads"]


def test_threads_storing_while_shrinking_and_writing_behind_lose_nothing(
    tmp_path: Path, client: Any
) -> None:
    with Frontswap(client, tmp_path / "swap", slots=400, write_behind=True) as swap:

        def worker(i: int) -> None:
            rng = random.Random(i)
            mine = range(i * 100, (i + 1) * 100)
            pages: dict[int, bytes] = {}
            for step in range(300):
                slot = rng.choice(mine)
                if rng.random() < 0.5:
                    pages[slot] = rng.randbytes(16) * (PS // 16)
                    swap.store(slot, pages[slot])
                elif slot in pages:
                    assert swap.load(slot) == pages[slot]
                if step % 50 == 0:
                    swap.shrink(rng.randrange(100))
            assert {s: swap.load(s) for s in pages} == pages

        run_threads(worker)

"""Honest accounting: what the host reports is the memory the process really spends."""

from __future__ import annotations

import gc
import random

import psutil
import pytest

import tmem
from tests.store.kinds import page_of
from tmem.engine import OBJECT_METADATA_BYTES, PAGE_METADATA_BYTES, POOL_METADATA_BYTES

#: Fixed slack for the measurement: the interpreter's own allocations, arrays'
#: spare room after growth, and each size class's first partly used OS page.
FIXED_OVERHEAD = 6 << 20


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def text_like(rng: random.Random) -> bytes:
    """A unique page that compresses about 2:1 (varied, so many size classes are used)."""
    k = rng.randrange(128, 1024)
    return rng.randbytes(k) + page_of("text", seed=rng.randrange(900))[: 4096 - k]


@pytest.mark.parametrize("compress, dedup", [("lz4", "client"), ("zstd", None)])
def test_resident_memory_grows_by_no_more_than_the_host_reports(compress, dedup):
    capacity = 48 << 20
    host = tmem.Host(capacity, compress=compress, dedup=dedup)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    rng = random.Random(5)
    before = rss()
    i = 0
    while client.put_page(pool, 1, i, text_like(rng)):
        i += 1
        assert i < 100_000
    grown = rss() - before
    stats = host.stats()
    assert stats["bytes"] <= capacity
    # the last put is refused because the host is full: by the capacity, or by the
    # persistent share rule, which a lone client meets at the same point
    assert stats["reject_capacity"] + stats["reject_share"] == 1
    assert i * 4096 > 1.2 * capacity  # compression really held more than raw bytes would
    assert grown <= stats["bytes"] + FIXED_OVERHEAD, (grown, stats["bytes"])


def test_freed_and_compacted_memory_goes_back_to_the_system():
    host = tmem.Host(64 << 20, compress="lz4", dedup=None)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    rng = random.Random(6)
    for i in range(8000):
        assert client.put_page(pool, 1, i, text_like(rng))
    full = rss()
    for i in range(8000):
        if i % 4:
            client.flush_page(pool, 1, i)
    with host.lock:
        host.store.compact()
    stats = host.stats()
    assert stats["store"]["hole_bytes"] == 0
    per_page = stats["bytes"] / stats["pages"]
    assert full - rss() >= 0.5 * 6000 * per_page  # most of the 6000 flushed pages' memory
    assert all(client.get_page(pool, 1, i) is not None for i in range(0, 8000, 4))


def test_a_full_host_never_reports_more_than_its_capacity_under_churn():
    capacity = 2 << 20
    host = tmem.Host(capacity, dedup="client")
    clients = [host.connect(f"vm{n}", compress=c) for n, c in enumerate(("lz4", "zstd", None))]
    pools = [(c, c.new_pool(), c.new_pool(persistent=True)) for c in clients]
    rng = random.Random(7)
    for step in range(6000):
        client, eph, pers = pools[step % 3]
        data = text_like(rng) if rng.random() < 0.8 else page_of("text", seed=rng.randrange(5))
        client.put_page(eph if rng.random() < 0.8 else pers, 1, rng.randrange(600), data)
        if step % 7 == 0:
            client.flush_page(pers, 1, rng.randrange(600))
        stats = host.stats()
        assert stats["bytes"] <= capacity
        objects = sum(
            p["objects"] for c in stats["clients"].values() for p in c["pools"].values()
        )
        assert stats["bytes"] == (
            host.store.used_bytes
            + PAGE_METADATA_BYTES * stats["pages"]
            + OBJECT_METADATA_BYTES * objects
            + POOL_METADATA_BYTES * stats["pools"]
        )
    assert host.stats()["evictions"] > 0


def test_a_full_host_refuses_when_evicting_shared_content_frees_nothing():
    host = tmem.Host(3 * 4096, dedup="client")
    client = host.connect("vm1")
    eph, pers = client.new_pool(), client.new_pool(persistent=True)
    results = []
    for i in range(6):
        data = page_of("text", seed=i)
        results.append(client.put_page(pers, 1, i, data))
        client.put_page(eph, 1, i, data)  # the same content: it shares the persistent copy
    assert results[0] and not results[-1]
    assert host.stats()["bytes"] <= 3 * 4096

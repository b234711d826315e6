"""A full ``tmem serve`` holds no more resident memory than its capacity plus a fixed
overhead, whatever the shape of what it stores: the engine charges what its pages,
objects and pools really cost (resident memory from /proc)."""

from __future__ import annotations

import random

import pytest

import tmem

from .hostile import resident, settle

MiB = 1 << 20
CAPACITY = 64 * MiB
#: The daemon's fixed overhead past its capacity in this test: the page table's
#: growth slack, the allocator's partly used arenas, one batch in flight.
OVERHEAD = 12 * MiB


@pytest.mark.parametrize(
    "page_size, pages_per_object",
    [(512, 1), (4096, 1), (4096, 64)],
    ids=["512B-one-page-objects", "4KiB-one-page-objects", "4KiB-64-page-objects"],
)
def test_a_full_daemon_holds_its_capacity_plus_a_fixed_overhead(
    serve_process, page_size, pages_per_object
):
    proc, address = serve_process("--capacity", str(CAPACITY), "--compress", "none")
    client = tmem.connect(address, name="filler")
    pool = client.new_pool(persistent=True, page_size=page_size)
    rng = random.Random(13)
    base = rng.randbytes(page_size)
    before = settle(proc.pid)
    peak, stored, refused, sample = before, 0, 0, []
    while refused == 0:
        batch = []
        for _ in range(max(1, 64 * 1024 // page_size)):  # 64 KiB a batch
            oid = rng.getrandbits(192) if pages_per_object == 1 else stored // pages_per_object
            index = stored % pages_per_object
            batch.append((oid, index, stored.to_bytes(8, "little") + base[8:]))
            stored += 1
        results = client.put_pages(pool, batch)
        sample = sample or batch
        refused = results.count(False)
        stored -= refused
        peak = max(peak, resident(proc.pid))
    grown = max(peak, settle(proc.pid)) - before
    stats = tmem.admin(address).stats()
    assert stats["pages"] == stored and CAPACITY * 0.97 < stats["bytes"] <= CAPACITY
    assert grown <= CAPACITY + OVERHEAD, (
        f"{stored} pages of {page_size} bytes ({pages_per_object} per object) grew the"
        f" daemon by {grown / MiB:.1f} MiB with a capacity of {CAPACITY / MiB:.0f} MiB"
    )
    first = [(oid, index) for oid, index, _ in sample]
    assert client.get_pages(pool, first) == [data for _, _, data in sample]  # intact

"""The metadata charges are what the engine's records really cost, shape by shape."""

from __future__ import annotations

import gc
import math
import random
import tracemalloc

import pytest

import tmem
from tmem.engine import metadata
from tmem.engine.metadata import OBJECT_METADATA_BYTES, PAGE_METADATA_BYTES

PAGE = 512
#: Pages of a fill.
FILL = 32_768  # frontswap's 16 dicts of 2,048 entries: near their mean bytes an entry


def _fill(handles: list[tuple[int, int]], persistent: bool = True) -> tuple[float, float, object]:
    """Put a page at every handle into a host whose page table already has room for
    them all; the Python heap the puts grew per page plus the page table's slots
    at their mean growth slack, the bytes charged per page beyond its own, and
    the host.  (The table's arrays are left out of the measured heap because a
    vec's allocation runs ahead of what it has written: tracemalloc counts that
    reserve, RSS does not.)"""
    host = tmem.Host(capacity=1 << 40, compress=None)
    client = host.connect("m")
    pool = client.new_pool(persistent=persistent, page_size=PAGE)
    page = bytes(PAGE)
    for pid in range(len(handles)):  # the table grows to its size, and stays
        assert client.put_page(pool, 0, pid, page)
    client.flush_object(pool, 0)
    gc.collect()
    tracemalloc.start()
    try:
        start, charged = tracemalloc.get_traced_memory()[0], host.stats()["bytes"]
        for oid, index in handles:
            # fresh ints, as a frontend or the wire decoder makes them
            assert client.put_page(pool, int(str(oid)), int(str(index)), page)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    n = len(handles)
    table = metadata.table_slot_bytes() * metadata.growth_slack()
    return traced / n + table, (host.stats()["bytes"] - charged) / n - PAGE, host


def test_frontswap_shape_costs_what_it_is_charged() -> None:
    # 16 objects of many pages, as frontswap puts them (slot & 15, slot >> 4)
    real, charged, _ = _fill([(i % 16, i >> 4) for i in range(FILL)])
    assert charged == pytest.approx(PAGE_METADATA_BYTES, abs=1)
    assert 0.85 * charged <= real <= 1.05 * charged


def test_file_shape_with_large_ids_costs_what_it_is_charged() -> None:
    # 64 pages a file, 192-bit ids made afresh for every put: one copy is kept an object
    rng = random.Random(3)
    ids = [rng.getrandbits(192) | 1 << 191 for _ in range(FILL // 64)]
    real, charged, _ = _fill([(ids[i // 64], 1000 + i % 64) for i in range(FILL - FILL % 64)])
    assert charged == pytest.approx(PAGE_METADATA_BYTES + OBJECT_METADATA_BYTES / 64, abs=1)
    assert 0.85 * charged <= real <= 1.05 * charged


def test_one_page_objects_cost_what_they_are_charged() -> None:
    rng = random.Random(4)
    handles = [(rng.getrandbits(192) | 1 << 191, 1000) for _ in range(FILL // 2)]
    real, charged, _ = _fill(handles)
    assert charged == PAGE_METADATA_BYTES + OBJECT_METADATA_BYTES
    assert 0.85 * charged <= real <= 1.05 * charged


def test_pages_of_an_object_share_one_copy_of_a_large_object_id() -> None:
    oid = 3 << 190
    host = tmem.Host(capacity=1 << 30, compress=None)
    client = host.connect("m")
    pool = client.new_pool(persistent=False, page_size=PAGE)
    for index in range(8):
        assert client.put_page(pool, int(str(oid)), index, bytes(PAGE))
    table = host.engine.table
    held = {id(table.oid[pid]) for pid in host.engine.pools[0].objs[oid].values()}
    assert len(held) == 1
    assert all(client.get_page(pool, oid, index) == bytes(PAGE) for index in range(8))


def test_the_charges_follow_the_structure_sizes() -> None:
    slot = metadata.table_slot_bytes()
    assert slot == 8 + 4 + 4 + 8 + 4 + 4 + 8 + 1 + 4 + 8  # nine arrays, a list item
    ints = 2 * metadata.int_bytes(1 << 20)
    expected = slot * metadata.growth_slack() + metadata.dict_entry_bytes() + ints
    assert math.ceil(expected) == PAGE_METADATA_BYTES
    assert metadata.int_bytes(256) == 0 and metadata.int_bytes(257) == 32
    assert 1.2 < metadata.growth_slack() < 1.25
    assert 27 < metadata.dict_entry_bytes() < 60

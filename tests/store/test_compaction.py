"""Size classes and compaction: objects move, handles and page bytes stay intact."""

from __future__ import annotations

import random

import pytest

import tmem
from tmem.store import CompressedStore
from tmem.store.zspool import (
    CLASS_BITS,
    CLASS_OF,
    COMPACT_BATCH,
    DEFER_OPS,
    HARD_FRACTION,
    OS_PAGE,
    SLOT_SIZE,
    class_size,
)


def varied_page(rng: random.Random, size: int = 4096) -> bytes:
    """A page whose compressed size is anywhere from a tenth to three quarters of it."""
    k = rng.randrange(size // 10, size * 7 // 10)
    return rng.randbytes(k) + bytes(size - k)


def test_size_classes_hold_every_size_with_little_rounding():
    seen = set()
    for size in range(1, 65537):
        slot = SLOT_SIZE[CLASS_OF[size]]
        assert size <= slot == class_size(size) <= size + 255
        if size >= 64:
            assert slot - size < max(16, size // 64)  # rounding under ~1.6%, 16 bytes at least
        seen.add(CLASS_OF[size])
    assert max(seen) < 1 << CLASS_BITS
    assert len(seen) == len({SLOT_SIZE[i] for i in seen})  # one index per slot size


def fill(store: CompressedStore, n: int, seed: int = 1) -> dict[int, bytes]:
    rng = random.Random(seed)
    pages = {}
    for _ in range(n):
        data = varied_page(rng)
        ref = store.put(data, True, 0)
        pages[ref] = data
    return pages


def holes_within(store: CompressedStore, fraction: float) -> bool:
    """Every class's holes are under ``fraction`` of its slots (or one OS page)."""
    return all(
        cls.top - cls.live <= max(fraction * cls.top, OS_PAGE / cls.slot_size) + 1
        for cls in store.pool.classes.values()
    )


def test_a_burst_of_frees_is_compacted_once_it_ends_and_every_page_stays_intact():
    store = CompressedStore("lz4", dedup=None)
    pages = fill(store, 3000)
    rng = random.Random(2)
    for ref in rng.sample(sorted(pages), 2200):
        store.free(ref)
        del pages[ref]
    burst = store.stats()
    # during the burst only the hard bound moved anything
    assert holes_within(store, HARD_FRACTION)
    assert not holes_within(store, store.pool.compact_fraction)
    assert burst["compaction_deferred"] > 0
    # later operations (here, same-size puts and frees of one page) pay the deferred work
    filler = bytes(1000) + rng.randbytes(3096)  # one class, away from the fill's
    for _ in range(DEFER_OPS):
        store.free(store.put(filler, True, 0))
    stats = store.stats()
    assert stats["objects_moved"] > burst["objects_moved"] and stats["compactions"] > 0
    assert stats["compaction_deferred"] == 0
    assert holes_within(store, store.pool.compact_fraction)
    assert all(store.get(ref) == data for ref, data in pages.items())


@pytest.mark.parametrize("order", ["newest", "oldest", "random"])
def test_emptying_a_store_moves_few_objects_and_gives_its_memory_back(order):
    store = CompressedStore("lz4", dedup=None)
    refs = sorted(fill(store, 3000))
    if order == "newest":
        refs.reverse()
    elif order == "random":
        random.Random(4).shuffle(refs)
    for ref in refs:
        store.free(ref)
    stats = store.stats()
    # objects moved during the burst all die in it: only the hard bound may move any
    assert stats["objects_moved"] <= (0 if order == "newest" else len(refs) * 0.4)
    assert stats["arena_resident_bytes"] <= stats["size_classes"] * OS_PAGE


def test_compaction_counts_its_cpu_time_only_when_asked():
    timings = []
    for timed in (False, True):
        store = CompressedStore("zstd", dedup=None, compact_fraction=1.0)
        store.pool.time_compaction = timed
        pages = fill(store, 600)
        for ref in random.Random(4).sample(sorted(pages), 450):
            store.free(ref)
        store.compact()
        stats = store.stats()
        assert stats["objects_moved"] > 0
        timings.append(stats["compaction_ns"])
    assert timings[0] == 0 < timings[1]


def test_full_compaction_leaves_no_holes_and_gives_memory_back():
    store = CompressedStore("zstd", dedup="client", compact_fraction=1.0)  # never on its own
    pages = fill(store, 2000)
    for ref in random.Random(3).sample(sorted(pages), 1500):
        store.free(ref)
        del pages[ref]
    before = store.stats()
    assert before["objects_moved"] == 0 and before["hole_bytes"] > 0
    moved = store.compact()
    after = store.stats()
    assert moved == after["objects_moved"] > 0
    assert after["hole_bytes"] == 0 and after["pages_compacted"] > 0
    assert after["arena_resident_bytes"] < before["arena_resident_bytes"]
    slack = after["size_classes"] * OS_PAGE  # each class's last OS page may be partly used
    assert after["arena_resident_bytes"] <= after["slot_bytes"] + slack
    assert all(store.get(ref) == data for ref, data in pages.items())
    more = fill(store, 500, seed=9)  # holes and moved slots are reused correctly
    assert all(store.get(ref) == data for ref, data in {**pages, **more}.items())


def test_one_free_moves_a_bounded_number_of_objects():
    store = CompressedStore("lz4", dedup=None, compact_fraction=0.0)
    size = 1024
    refs = [
        store.put(random.Random(i).randbytes(size // 2) + bytes(size // 2), True, 0)
        for i in range(2000)
    ]
    cls_moves = []
    for ref in refs[: len(refs) * 3 // 4]:  # past the hard bound: moves during the burst
        before = store.pool.objects_moved
        store.free(ref)
        cls_moves.append(store.pool.objects_moved - before)
    assert 0 < max(cls_moves) <= COMPACT_BATCH
    store.compact()
    assert store.stats()["hole_bytes"] == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.5, "1"])
def test_compaction_threshold_out_of_range_is_invalid(fraction):
    with pytest.raises(tmem.InvalidArgument):
        CompressedStore("lz4", compact_fraction=fraction)


def test_compaction_under_a_host_keeps_every_handle_reading_its_page():
    host = tmem.Host(64 << 20, compress="lz4", dedup="client")
    client = host.connect("vm1")
    pers, eph = client.new_pool(persistent=True), client.new_pool()
    rng = random.Random(5)
    originals = [varied_page(rng) for _ in range(3000)]
    for i, data in enumerate(originals):
        assert client.put_page(pers, i % 7, i, data)
        if i % 3 == 0:
            assert client.put_page(eph, i % 7, i, data)  # shares the persistent copy
    kept = dict(enumerate(originals))
    for oid in range(0, 7, 2):
        client.flush_object(pers, oid)
    for i in rng.sample(range(3000), 1500):
        client.flush_page(pers, i % 7, i)
        kept.pop(i)
    assert host.stats()["store"]["objects_moved"] > 0
    for i, data in enumerate(originals):
        expect = kept[i] if i in kept and (i % 7) % 2 else None
        assert client.get_page(pers, i % 7, i) == expect
        assert client.get_page(eph, i % 7, i) == (data if i % 3 == 0 else None)
    survivors = sum(1 for i in kept if (i % 7) % 2)
    assert host.stats()["store"]["stored_pages"] == survivors == client.stats()["pages"]


def test_an_emptied_store_shrinks_its_rows_and_owner_arrays():
    store = CompressedStore("lz4", dedup="client")
    refs = sorted(fill(store, 5000))
    grown = store.table.size
    for ref in refs:
        store.free(ref)
    assert grown > store.table.size == store.table.initial
    assert all(len(c.owner) <= 1024 for c in store.pool.classes.values())
    again = fill(store, 300, seed=7)  # rows and slots are handed out afresh
    assert all(store.get(ref) == data for ref, data in again.items())

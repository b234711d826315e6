"""The size-class pool against a model: objects moved across maps read back exactly,
and memory freed off the classes' tops is held within its bound, then given back."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.store.handles import HandleTable
from tmem.store.zspool import CHUNK_BYTES, HOLD_MIN, OS_PAGE, ZsPool

#: Object sizes of three classes; 3,000 objects of one fill several 1 MiB maps.
SIZES = (700, 2000, 3000)


def body(key: int, size: int) -> bytes:
    """Distinct bytes for every object, so a move to the wrong place is seen."""
    return random.Random(key).randbytes(size)


def held_within_bound(pool: ZsPool) -> bool:
    """``held`` is the memory past the classes' tops not yet given back, within its bound."""
    exact = sum((c.resident - c.top) * c.slot_size for c in pool.classes.values())
    return pool.held == exact and (pool.held <= HOLD_MIN or pool.held <= pool.used_bytes >> 3)


def released_above_tops(pool: ZsPool) -> bool:
    """Past each class's top (rounded up to an OS page) its last map reads zero, and
    no map lies wholly past the top: what was freed there went back to the kernel."""
    for cls in pool.classes.values():
        keep = max(-(-cls.top // cls.per_chunk), 1)
        if len(cls.chunks) > keep:
            return False
        if not cls.chunks:
            continue
        base = (keep - 1) * cls.per_chunk
        start = -(-((cls.top - base) * cls.slot_size) // OS_PAGE) * OS_PAGE
        tail = cls.chunks[keep - 1][start:]
        if tail.count(0) != len(tail):
            return False
    return True


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), fill=st.integers(200, 3000), keep=st.floats(0.0, 0.5))
def test_objects_survive_compaction_and_held_memory_stays_bounded(seed, fill, keep):
    rng = random.Random(seed)
    table = HandleTable(dedup=False)
    pool = ZsPool(table, compact_fraction=rng.choice((0.0, 1 / 16, 1.0)))
    size = rng.choice(SIZES)
    live: dict[int, bytes] = {}

    def put(key: int) -> None:
        data = body(key, size if rng.random() < 0.9 else rng.choice(SIZES))
        h = table.alloc(0)
        table.loc[h] = pool.store(data, h)
        table.clen[h] = len(data)
        live[h] = data

    def free(h: int) -> None:
        pool.free(table.loc[h])
        table.release(h)
        del live[h]

    for key in range(fill):
        put(key)
    assert len(pool.classes) <= len(SIZES)
    # a random shrink to ``keep`` of the objects, with some puts among the frees
    for h in rng.sample(sorted(live), int(fill * (1 - keep))):
        free(h)
        if rng.random() < 0.05:
            put(rng.randrange(1 << 30))
        assert held_within_bound(pool)
    assert all(pool.read(table.loc[h], len(d)) == d for h, d in live.items())
    pool.compact()
    assert pool.held == 0 and released_above_tops(pool)
    assert all(pool.read(table.loc[h], len(d)) == d for h, d in live.items())
    stats = pool.stats()
    assert stats["hole_bytes"] == 0
    # each class's last OS page may be partly used, and each full map's last one
    slack = (stats["size_classes"] + stats["mapped_bytes"] // CHUNK_BYTES) * OS_PAGE
    assert stats["arena_resident_bytes"] <= stats["slot_bytes"] + slack
    for h in list(live):
        free(h)
    assert pool.held == 0 and pool.used_bytes == 0 and released_above_tops(pool)
    assert pool.stats()["arena_resident_bytes"] == 0
    assert all(len(c.chunks) <= 1 for c in pool.classes.values())
    assert CHUNK_BYTES // max(SIZES) < 3000  # the fill crosses maps

"""Random puts, gets and frees straight against the compressed store, checked against a model."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.store import REJECTED, CompressedStore
from tmem.store.zspool import OWNER_BYTES, SLOT_SIZE

CONFIGS = [
    {"compress": "lz4", "dedup": "client", "compact_fraction": 0.0},
    {"compress": "zstd", "dedup": "host", "compact_fraction": 0.1},
    {"compress": None, "dedup": None, "compact_fraction": 0.0},
    {"compress": "lz4", "dedup": None, "compact_fraction": 1.0},
]


def page(seed: int, size: int) -> bytes:
    """Seeds repeat, so duplicates are common; the seed sets how well the page compresses."""
    rng = random.Random(seed)
    kind = seed % 5
    if kind == 0:
        return bytes([seed % 3]) * size
    k = size * kind // 6
    return rng.randbytes(k) + bytes(size - k)


def footprints(store: CompressedStore) -> int:
    """What used_bytes must be: each live handle's row, slot and owner entry, and the index."""
    table, total = store.table, store.index.table_bytes
    for h in range(table.size):
        if table.refs[h] > 0:
            total += store.row_bytes
            if table.meta[h] & 3 != 3:  # not same-filled
                total += OWNER_BYTES + SLOT_SIZE[table.loc[h] & 1023]
    return total


OPS = ("put", "put", "put", "free", "free", "get", "compact")


def steps(seed: int, n: int) -> list[tuple[str, int, bool, int, int]]:
    """``n`` random operations: (op, page seed, persistent, page size, client)."""
    rng = random.Random(seed)
    return [
        (
            rng.choice(OPS),
            rng.randrange(200),
            rng.random() < 0.5,
            rng.choice((512, 4096)),
            rng.randrange(3),
        )
        for _ in range(n)
    ]


@settings(max_examples=60, deadline=None)
@given(config=st.sampled_from(CONFIGS), run=st.integers(0, 2**32), n=st.integers(1, 400))
def test_every_reference_reads_its_page_and_the_bytes_add_up(config, run, n):
    store = CompressedStore(**config)
    live: list[tuple[int, bytes]] = []
    for op, seed, persistent, size, cid in steps(run, n):
        if op == "put":
            data = page(seed, size)
            ref = store.put(data, persistent, cid)
            if ref == REJECTED:
                assert not persistent
            else:
                live.append((ref, data))
        elif op == "compact":
            store.compact()
            assert store.stats()["hole_bytes"] == 0
        elif live:
            ref, data = live.pop(seed % len(live)) if op == "free" else live[seed % len(live)]
            if op == "free":
                store.free(ref)
            else:
                assert store.get(ref) == data
    assert all(store.get(ref) == data for ref, data in live)
    assert store.used_bytes == footprints(store)
    assert store.stats()["logical_pages"] == len(live)
    for ref, _ in live:
        store.free(ref)
    assert store.used_bytes == 0 and store.stats()["stored_pages"] == 0
    assert store.stats()["slot_bytes"] == 0 and len(store.index) == 0

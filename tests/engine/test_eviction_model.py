"""Eviction within a client against a reference model: exact LRU of its ephemeral pages,
with the pages kept raw because they compress poorly going before the others."""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

import tmem
from tests.charges import room_for

PAGE = 4096
HANDLES = 16


def page(kind: str, seed: int) -> bytes:
    """A page that compresses well (``good``: a random quarter, zeros after) or not."""
    rng = random.Random(seed)
    if kind == "good":
        return rng.randbytes(PAGE // 4) + bytes(PAGE - PAGE // 4)
    return rng.randbytes(PAGE)


OPS = st.lists(
    st.tuples(st.sampled_from(["good", "poor", "get", "flush"]), st.integers(0, HANDLES - 1)),
    min_size=20,
    max_size=100,
)


@settings(max_examples=50, deadline=None)
@given(ops=OPS)
def test_the_pages_evicted_are_the_ones_a_reference_lru_with_poor_pages_first_names(ops):
    host = tmem.Host(room_for(3), compress="lz4")
    shared = uuid.uuid4()  # a shared pool: its gets keep the page and make it most recent
    host.authorize_shared("vm", shared)
    client = host.connect("vm")
    pool = client.new_pool(shared=True, uuid=shared)
    lists: dict[str, OrderedDict[int, bytes]] = {"poor": OrderedDict(), "good": OrderedDict()}
    for step, (op, i) in enumerate(ops):
        evicted = host.stats()["evictions"]
        if op in ("good", "poor"):
            for held in lists.values():  # a second put replaces (or, refused, flushes) the page
                held.pop(i, None)
            data = page(op, step)
            stored = client.put_page(pool, 1, i, data)
            for _ in range(host.stats()["evictions"] - evicted):
                victims = lists["poor"] or lists["good"]
                victims.popitem(last=False)  # the oldest poor page, else the least recent
            if stored:
                lists[op][i] = data
        elif op == "get":
            expected = next((held[i] for held in lists.values() if i in held), None)
            assert client.get_page(pool, 1, i) == expected
            for held in lists.values():
                if i in held:
                    held.move_to_end(i)
        else:
            client.flush_page(pool, 1, i)
            for held in lists.values():
                held.pop(i, None)
    for i in range(HANDLES):
        expected = next((held[i] for held in lists.values() if i in held), None)
        assert client.get_page(pool, 1, i) == expected

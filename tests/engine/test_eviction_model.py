"""Eviction within a client against a reference model: exact LRU of its ephemeral pages,
the pages kept raw because they compress poorly in an LRU of their own, and of the two
least recent pages the one that held more bytes for longer goes."""

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


class Charges:
    """What a page costs its owner, measured on a host of its own."""

    def __init__(self) -> None:
        self.client = tmem.Host(1 << 20, compress="lz4").connect("scale")
        self.pool = self.client.new_pool()
        assert self.client.put_page(self.pool, 1, 0, page("good", -1))  # keeps the object

    def __call__(self, data: bytes) -> int:
        before = self.client.stats()["bytes"]
        assert self.client.put_page(self.pool, 1, 1, data)
        cost = self.client.stats()["bytes"] - before
        self.client.flush_page(self.pool, 1, 1)
        return cost


def victim(lists: dict[str, OrderedDict[int, tuple[bytes, int, int]]], now: int) -> str:
    """The list whose least recent page goes: of the two, the one that has held its
    bytes for longer (age in puts times charged bytes); a raw page wins ties."""
    if not lists["poor"]:
        return "good"
    if not lists["good"]:
        return "poor"
    _, poor_put, poor_cost = next(iter(lists["poor"].values()))
    _, good_put, good_cost = next(iter(lists["good"].values()))
    return "poor" if (now - poor_put) * poor_cost >= (now - good_put) * good_cost else "good"


OPS = st.lists(
    st.tuples(st.sampled_from(["good", "poor", "get", "flush"]), st.integers(0, HANDLES - 1)),
    min_size=20,
    max_size=100,
)


@settings(max_examples=50, deadline=None)
@given(ops=OPS)
def test_the_pages_evicted_are_the_ones_a_reference_lru_weighing_raw_pages_by_bytes_names(ops):
    host = tmem.Host(room_for(3), compress="lz4")
    shared = uuid.uuid4()  # a shared pool: its gets keep the page and make it most recent
    host.authorize_shared("vm", shared)
    client = host.connect("vm")
    pool = client.new_pool(shared=True, uuid=shared)
    charge = Charges()
    # handle -> (data, the put that stored it, its charged bytes), least recent first
    lists: dict[str, OrderedDict[int, tuple[bytes, int, int]]] = {
        "poor": OrderedDict(),
        "good": OrderedDict(),
    }
    puts = 0  # the pages stored so far: the engine's versions
    for step, (op, i) in enumerate(ops):
        evicted = host.stats()["evictions"]
        if op in ("good", "poor"):
            for held in lists.values():  # a second put replaces (or, refused, flushes) the page
                held.pop(i, None)
            data = page(op, step)
            stored = client.put_page(pool, 1, i, data)
            for _ in range(host.stats()["evictions"] - evicted):
                lists[victim(lists, puts)].popitem(last=False)
            if stored:
                puts += 1
                lists[op][i] = (data, puts, charge(data))
        elif op == "get":
            expected = next((held[i][0] for held in lists.values() if i in held), None)
            assert client.get_page(pool, 1, i) == expected
            for held in lists.values():
                if i in held:
                    held.move_to_end(i)
        else:
            client.flush_page(pool, 1, i)
            for held in lists.values():
                held.pop(i, None)
    for i in range(HANDLES):
        expected = next((held[i][0] for held in lists.values() if i in held), None)
        assert client.get_page(pool, 1, i) == expected

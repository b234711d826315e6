"""Frequency-aware eviction (``eviction="frequency"``) against a reference model, and the
sketch that counts gets per handle."""

from __future__ import annotations

from collections import Counter, OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tmem
from tests.charges import room_for
from tmem.engine.frequency import LIMIT, ROWS, SAMPLE, Sketch, check_eviction

PAGE = 4096
HANDLES = 12
KEPT = 4


def data(i: int, step: int) -> bytes:
    return (i * 1000 + step).to_bytes(8, "little") * (PAGE // 8)


class Model:
    """A private ephemeral pool under frequency eviction, exactly: pages in put order
    (gets take them out), each handle's gets (hits and misses) counted up to LIMIT and
    halved once per window of gets; of the SAMPLE least recent pages, the one got
    least often goes, the least recent of those on ties."""

    def __init__(self, window: int) -> None:
        self.pages: OrderedDict[int, bytes] = OrderedDict()
        self.counts: Counter[int] = Counter()
        self.window, self.counted = window, 0

    def get(self, i: int) -> bytes | None:
        self.counts[i] = min(LIMIT, self.counts[i] + 1)
        self.counted += 1
        if self.counted >= self.window:
            self.counted = 0
            for key in self.counts:
                self.counts[key] //= 2
        return self.pages.pop(i, None)

    def evict(self) -> None:
        candidates = list(self.pages)[:SAMPLE]
        coldest = min(candidates, key=lambda i: (self.counts[i], candidates.index(i)))
        del self.pages[coldest]


def exact_for(sketch: Sketch, keys: list[tuple[int, int, int]]) -> bool:
    """True if every key has a counter, in some row, that no other key shares: the
    sketch then counts each key exactly (up to LIMIT)."""
    cells = {key: sketch._cells(key) for key in keys}
    return all(
        any(all(cells[other][row] != cells[key][row] for other in keys if other != key)
            for row in range(ROWS))
        for key in keys
    )  # fmt: skip


OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get", "get", "flush"]), st.integers(0, HANDLES - 1)),
    min_size=20,
    max_size=150,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_the_pages_evicted_are_the_least_frequent_of_those_next_to_go_in_a_reference_model(ops):
    host = tmem.Host(room_for(KEPT), compress=None, dedup=None, order="lru", eviction="frequency")
    client = host.connect("vm")
    pool = client.new_pool()
    engine = host.engine
    sketch = engine.sketch
    assert sketch is not None
    uid = engine.client("vm").pools[pool].uid
    assert exact_for(sketch, [(uid, 1, i) for i in range(HANDLES)])
    model = Model(sketch.window)
    for step, (op, i) in enumerate(ops):
        if op == "put":
            model.pages.pop(i, None)
            evicted = host.stats()["evictions"]
            page = data(i, step)
            assert client.put_page(pool, 1, i, page)
            for _ in range(host.stats()["evictions"] - evicted):
                model.evict()
            model.pages[i] = page
        elif op == "get":
            assert client.get_page(pool, 1, i) == model.get(i)
        else:
            client.flush_page(pool, 1, i)
            model.pages.pop(i, None)
    for i in range(HANDLES):
        assert client.get_page(pool, 1, i) == model.get(i)


def test_a_page_got_again_and_again_outlives_newer_pages_that_lru_would_keep():
    """A page whose handle was got many times stays while pages put once come and go;
    under LRU it is the first to go."""
    kept = {}
    for eviction in ("frequency", "lru"):
        host = tmem.Host(room_for(KEPT), compress=None, dedup=None, order="lru",
                         eviction=eviction)  # fmt: skip
        client = host.connect("vm")
        pool = client.new_pool()
        for step in range(5):  # handle 0 comes back five times
            assert client.put_page(pool, 1, 0, data(0, step))
            assert client.get_page(pool, 1, 0) == data(0, step)
        client.put_page(pool, 1, 0, data(0, 99))
        for i in range(1, 2 * KEPT):  # a scan of pages never got
            assert client.put_page(pool, 1, i, data(i, 0))
        kept[eviction] = client.get_page(pool, 1, 0) == data(0, 99)
    assert kept == {"frequency": True, "lru": False}


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**64), st.integers(0, 50))))
def test_the_sketch_never_counts_a_handle_less_than_it_was_got_up_to_the_limit(keys):
    sketch = Sketch(1024)  # a window far beyond the gets here: no halving
    for key in keys:
        sketch.add(key)
    for key, times in Counter(keys).items():
        assert min(times, LIMIT) <= sketch.count(key) <= LIMIT


def test_the_sketch_halves_every_count_once_a_window_of_gets_is_counted():
    sketch = Sketch(8)
    key, other = (1, 2, 3), (2, 0, 0)
    assert exact_for(sketch, [key, other])
    for _ in range(10):
        sketch.add(key)
    assert sketch.count(key) == 10
    for _ in range(sketch.window - 10 - 1):
        sketch.add(other)
    assert (sketch.count(key), sketch.count(other)) == (10, LIMIT)
    sketch.add(other)  # the window's last get
    assert (sketch.count(key), sketch.count(other)) == (5, LIMIT // 2)


def test_an_unknown_eviction_is_refused_by_name():
    assert check_eviction("frequency") == "frequency"
    with pytest.raises(tmem.InvalidArgument, match="eviction"):
        tmem.Host(1 << 20, eviction="lfu")
    assert tmem.Host(1 << 20, eviction="frequency").stats()["eviction"] == "frequency"
    assert tmem.Host(1 << 20).stats()["eviction"] == "lru"


def test_only_the_pages_next_to_go_are_weighed():
    """Of a client's pages only the SAMPLE least recent are candidates: a page never got
    that sits further up stays, and the least recent of the candidates goes."""
    pages = SAMPLE + 6
    host = tmem.Host(room_for(pages), compress=None, dedup=None, order="lru",
                     eviction="frequency")  # fmt: skip
    client = host.connect("vm")
    pool = client.new_pool()
    for i in range(SAMPLE):  # each got once before it is put: counted 1
        assert client.get_page(pool, 1, i) is None
        assert client.put_page(pool, 1, i, data(i, 0))
    for i in range(SAMPLE, pages):  # never got: counted 0, but further from the end
        assert client.put_page(pool, 1, i, data(i, 0))
    assert client.put_page(pool, 1, pages, data(pages, 0))
    assert host.stats()["evictions"] == 1
    assert client.get_page(pool, 1, 0) is None
    assert client.get_page(pool, 1, SAMPLE) == data(SAMPLE, 0)

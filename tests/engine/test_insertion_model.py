"""The adaptive order within a client against a reference model written out plainly:
where each new page goes on the client's list, and which order each of its two
shadow lists says misses less."""

from __future__ import annotations

import random

from hypothesis import event, given, settings
from hypothesis import strategies as st

import tmem
from tests.charges import room_for

PAGE = 4096
HANDLES = 24
CAPACITY_PAGES = 6
BIMODAL = 32  # one new page in 32 goes in at the most recent end under reuse
MARGIN = 0.1
HIT_LIMIT = 16  # handles got lately a small host remembers (at least 16)
DECAY_EVERY = 64  # evictions between halvings of the shadows' misses (at least 64)


class Reference:
    """The adaptive order, one client: its list (evicting end first), handles got lately,
    a shadow list per order with its misses, and the order in use."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self.data: dict[int, bytes] = {}
        self.got: list[int] = []
        self.shadows: dict[str, list[int]] = {"lru": [], "reuse": []}
        self.misses = {"lru": 0.0, "reuse": 0.0}
        self.reusing = False
        self.new = {"tmem": 0, "shadow": 0}
        self.evictions = 0

    def goes_last(self, i: int, where: str) -> bool:
        if i in self.got:
            return False
        self.new[where] += 1
        return self.new[where] % BIMODAL != 0

    def evict(self) -> None:
        i = self.held.pop(0)
        del self.data[i]
        self.evictions += 1
        if self.evictions % DECAY_EVERY == 0:
            self.misses = {name: n / 2 for name, n in self.misses.items()}

    def put(self, i: int, data: bytes, evictions: int) -> None:
        for _ in range(evictions):
            self.evict()
        length = len(self.held) + 2  # the client's pages with this one, plus one
        for name, shadow in self.shadows.items():
            if i in shadow:
                shadow.remove(i)
            if name == "reuse" and self.goes_last(i, "shadow"):
                shadow.insert(0, i)
            else:
                shadow.append(i)
            del shadow[: max(0, len(shadow) - length)]
        if self.reusing and self.goes_last(i, "tmem"):
            self.held.insert(0, i)
        else:
            self.held.append(i)
        self.data[i] = data

    def get(self, i: int) -> bytes | None:
        for name, shadow in self.shadows.items():
            if i in shadow:
                shadow.remove(i)
            else:
                self.misses[name] += 1
        lru, reuse = self.misses["lru"], self.misses["reuse"]
        if reuse < lru * (1 - MARGIN):
            self.reusing = True
        elif lru < reuse * (1 - MARGIN):
            self.reusing = False
        if i not in self.data:
            return None
        self.held.remove(i)
        if i in self.got:
            self.got.remove(i)
        self.got.append(i)
        del self.got[: max(0, len(self.got) - HIT_LIMIT)]
        return self.data.pop(i)

    def flush(self, i: int) -> None:
        if i in self.data:
            self.held.remove(i)
            del self.data[i]


OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get", "flush", "loop"]), st.integers(0, HANDLES - 1)),
    min_size=20,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, loop=st.integers(8, 20))
def test_new_pages_go_where_the_reference_adaptive_order_puts_them(ops, loop):
    host = tmem.Host(room_for(CAPACITY_PAGES), compress=None, dedup=None)
    assert host.stats()["order"] == "adaptive"
    client = host.connect("vm")
    pool = client.new_pool()
    model = Reference()
    rng = random.Random(len(ops))
    orders_seen = set()

    def put(i: int) -> None:
        if i in model.data:  # a cache puts a page only when tmem does not hold it
            return
        data = rng.randbytes(PAGE)
        evicted = host.stats()["evictions"]
        assert client.put_page(pool, 1, i, data)
        model.put(i, data, host.stats()["evictions"] - evicted)

    def get(i: int) -> None:
        assert client.get_page(pool, 1, i) == model.get(i)
        insertion = client.stats()["insertion"]
        assert insertion == ("reuse" if model.reusing else "lru")
        orders_seen.add(insertion)

    for op, i in ops:
        if op == "put":
            put(i)
        elif op == "get":
            get(i)
        elif op == "flush":
            client.flush_page(pool, 1, i)
            model.flush(i)
        else:  # a guest's cache going round a loop: each page read (get), then evicted (put)
            for j in range(loop):
                get((i + j) % HANDLES)
                put((i + j) % HANDLES)
    for i in range(HANDLES):
        get(i)
    event(f"orders used: {sorted(orders_seen)}")

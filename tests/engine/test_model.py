"""Random sequences of every operation, from several clients, against a reference model.

The model is what the contract allows: persistent pages must come back exactly
until flushed; an ephemeral get returns the last page put or nothing, and
after it misses it keeps missing until the next put; private ephemeral gets
take the page; no client ever sees another's private pages.  The host runs
under capacity pressure and capacity and cap changes.
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import tmem
from tmem.engine import PAGE_METADATA_BYTES

#: Host options the model runs under; every store configuration belongs here.
STORE_OPTIONS: list[dict] = [
    {"compress": None},
    {"compress": "lz4", "dedup": "client"},
    {"compress": "zstd", "dedup": "host"},
    {"compress": None, "dedup": "host"},
    # every eviction policy too
    {"compress": "lz4", "dedup": "client", "policy": "share"},
    {"compress": None, "policy": "utility", "reserve": 0.0},
    # and both orders within a client (the default is adaptive)
    {"compress": "lz4", "order": "lru"},
]

PAGE = 512
CLIENTS = ("a", "b", "c")
SHARED = uuid.UUID(int=7)  # a and b may use it; c may not


def content(client: str, seed: int) -> bytes:
    """A page whose kind (zeros, one byte, text, random) and bytes follow the seed."""
    kind = seed % 4
    if kind == 0:
        return bytes(PAGE)
    if kind == 1:
        return bytes([seed % 251 + 1]) * PAGE
    if kind == 2:
        return f"{client} page {seed} ".encode().ljust(PAGE, b"-")
    return random.Random(f"{client}{seed}").randbytes(PAGE)


class ModelPool:
    def __init__(self, persistent: bool, shared: bool) -> None:
        self.persistent = persistent
        self.shared = shared
        self.pages: dict[tuple[int, int], bytes] = {}  # what a get may return


class EngineModel(RuleBasedStateMachine):
    options: dict = {}
    pools = Bundle("pools")

    @initialize(capacity=st.integers(0, 60))
    def start(self, capacity: int) -> None:
        self.host = tmem.Host(capacity * (PAGE + PAGE_METADATA_BYTES), **self.options)
        self.host.authorize_shared("a", SHARED)
        self.host.authorize_shared("b", SHARED)
        self.clients = {name: self.host.connect(name) for name in CLIENTS}
        self.model: dict[tuple[str, int], ModelPool] = {}
        self.shared_pages: dict[tuple[int, int], bytes] = {}

    def _pool(self, key: tuple[str, int]) -> ModelPool:
        return self.model[key]

    @rule(target=pools, client=st.sampled_from(CLIENTS), persistent=st.booleans())
    def new_private_pool(self, client: str, persistent: bool) -> tuple[str, int]:
        pid = self.clients[client].new_pool(persistent=persistent, page_size=PAGE)
        self.model[(client, pid)] = ModelPool(persistent, False)
        return (client, pid)

    @rule(target=pools, client=st.sampled_from(CLIENTS))
    def join_shared_pool(self, client: str) -> tuple[str, int]:
        if client == "c":
            with pytest.raises(tmem.PermissionDenied):
                self.clients[client].new_pool(shared=True, uuid=SHARED, page_size=PAGE)
            return ("c", -1)
        pid = self.clients[client].new_pool(shared=True, uuid=SHARED, page_size=PAGE)
        pool = ModelPool(False, True)
        pool.pages = self.shared_pages  # every member sees the same pages
        self.model[(client, pid)] = pool
        return (client, pid)

    @rule(key=pools, oid=st.integers(0, 3), index=st.integers(0, 5), seed=st.integers(0, 40))
    def put(self, key, oid, index, seed) -> None:
        if key not in self.model:
            return self._expect_no_such_pool(key)
        data = content(key[0], seed)
        accepted = self.clients[key[0]].put_page(key[1], oid, index, data)
        if accepted:
            self._pool(key).pages[(oid, index)] = data
        else:
            self._pool(key).pages.pop((oid, index), None)

    @rule(key=pools, oid=st.integers(0, 3), index=st.integers(0, 5))
    def get(self, key, oid, index) -> None:
        if key not in self.model:
            return self._expect_no_such_pool(key)
        pool = self._pool(key)
        got = self.clients[key[0]].get_page(key[1], oid, index)
        expected = pool.pages.get((oid, index))
        if pool.persistent:
            assert got == expected
            return
        assert got is None or got == expected
        if got is None or not pool.shared:
            pool.pages.pop((oid, index), None)  # get-get: a miss stays a miss

    @rule(key=pools, oid=st.integers(0, 3), index=st.integers(0, 5))
    def flush_page(self, key, oid, index) -> None:
        if key not in self.model:
            return self._expect_no_such_pool(key)
        self.clients[key[0]].flush_page(key[1], oid, index)
        self._pool(key).pages.pop((oid, index), None)

    @rule(key=pools, oid=st.integers(0, 3))
    def flush_object(self, key, oid) -> None:
        if key not in self.model:
            return self._expect_no_such_pool(key)
        self.clients[key[0]].flush_object(key[1], oid)
        pages = self._pool(key).pages
        for handle in [h for h in pages if h[0] == oid]:
            del pages[handle]

    @rule(key=consumes(pools))
    def destroy_pool(self, key) -> None:
        if key not in self.model:
            return self._expect_no_such_pool(key)
        self.clients[key[0]].destroy_pool(key[1])
        pool = self.model.pop(key)
        if pool.shared and not any(p.shared for p in self.model.values()):
            self.shared_pages.clear()  # the last member left: the pool is gone

    @rule(capacity=st.integers(0, 60))
    def set_capacity(self, capacity: int) -> None:
        self.host.set_capacity(capacity * (PAGE + PAGE_METADATA_BYTES))

    @rule(client=st.sampled_from(CLIENTS), cap=st.none() | st.integers(0, 30), w=st.integers(1, 4))
    def set_client(self, client: str, cap: int | None, w: int) -> None:
        cap_bytes = None if cap is None else cap * (PAGE + PAGE_METADATA_BYTES)
        self.host.set_client(client, weight=w, cap=cap_bytes)

    @rule(client=st.sampled_from(CLIENTS), frozen=st.booleans())
    def freeze(self, client: str, frozen: bool) -> None:
        self.host.set_client(client, frozen=frozen)

    def _expect_no_such_pool(self, key) -> None:
        client, pid = key
        with pytest.raises(tmem.NoSuchPool):
            self.clients[client].get_page(pid, 0, 0)

    @invariant()
    def ephemeral_pages_never_hold_memory_past_capacity(self) -> None:
        engine = self.host.engine
        if engine.used > engine.capacity:
            assert engine.eph_used == 0

    @invariant()
    def charges_add_up(self) -> None:
        engine = self.host.engine
        clients = engine.clients.values()
        assert engine.pages == sum(c.pages for c in clients)
        assert sum(p.bytes for p in engine.pools.values()) == sum(c.bytes for c in clients)
        assert engine.eph_used == sum(c.eph_bytes for c in clients) >= 0

    @precondition(lambda self: hasattr(self, "model"))
    @rule()
    def every_persistent_page_is_intact_and_flushed_ones_miss(self) -> None:
        for (client, pid), pool in self.model.items():
            if pool.persistent:
                for oid in range(4):
                    for index in range(6):
                        got = self.clients[client].get_page(pid, oid, index)
                        assert got == pool.pages.get((oid, index))


for _n, _options in enumerate(STORE_OPTIONS):
    _name = "TestEngineModel_" + "_".join(f"{k}_{v}" for k, v in _options.items())
    _machine = type(_name, (EngineModel,), {"options": _options})
    _machine.TestCase.settings = settings(
        max_examples=100,
        stateful_step_count=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    globals()[_name] = _machine.TestCase

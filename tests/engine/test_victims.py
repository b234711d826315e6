"""Victim choice is a plain function the engine is handed; the engine only applies its rules."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from tests.charges import COST, PAGE, room_for
from tmem.api import OP_COUNTERS
from tmem.engine import OBJECT_METADATA_BYTES, Engine, state
from tmem.engine.state import ClientState, Counters
from tmem.engine.victims import most_over
from tmem.store import make_store


def _full_engine(choose_client=most_over) -> tuple[Engine, ClientState, ClientState]:
    capacity = room_for(4, objects=3, pools=2)  # and a third object to come
    engine = Engine(make_store(None, None), capacity, choose_client=choose_client)
    a, b = engine.add_client("a"), engine.add_client("b", weight=3)
    pa, pb = engine.new_pool(a), engine.new_pool(b)
    for i in range(2):
        assert engine.put(a, pa, 1, i, bytes([i]) * PAGE)
        assert engine.put(b, pb, 1, i, bytes([i]) * PAGE)
    return engine, a, b


def test_the_default_choice_evicts_from_the_client_most_over_its_weighted_share():
    engine, a, b = _full_engine()
    assert engine.put(b, 0, 2, 0, b"x" * PAGE)
    assert (a.evictions, b.evictions) == (1, 0)


def test_the_engine_evicts_from_the_client_its_choice_function_names():
    asked: list[tuple[ClientState | None, int]] = []

    def heaviest_weight(clients: Iterable[ClientState], putter, cost: int) -> ClientState:
        asked.append((putter, cost))
        return max((c for c in clients if c.eph_bytes > 0), key=lambda c: c.weight)

    engine, a, b = _full_engine(heaviest_weight)
    assert engine.put(b, 0, 2, 0, b"x" * PAGE)
    assert (a.evictions, b.evictions) == (0, 1)
    assert asked == [(b, COST + OBJECT_METADATA_BYTES)]  # a page of a new object
    engine.set_capacity(room_for(2, objects=2, pools=2))  # shrinking asks with no putter
    assert asked[1:] == [(None, 0)] * 2 and b.evictions == 3


def test_counters_declare_every_counter_of_the_table():
    # Read from the source: a class mypyc compiled keeps no __annotations__.
    source = Path(state.__file__).with_name("state.py").read_text()
    classes = ast.parse(source).body
    (counters,) = (c for c in classes if isinstance(c, ast.ClassDef) and c.name == "Counters")
    declared = [n.target.id for n in counters.body if isinstance(n, ast.AnnAssign)]
    assert tuple(declared) == OP_COUNTERS
    assert Counters().counters() == dict.fromkeys(OP_COUNTERS, 0)

"""The duel's ordered handle lists against the ``OrderedDict`` operations they stand for."""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.setdueling import GHOSTS, Duel, Handles, Recency

KEYS = st.tuples(st.integers(0, 2), st.integers(0, 1 << 192), st.integers(0, 5))
OPS = st.lists(
    st.tuples(st.sampled_from(["to_end", "to_front", "discard", "pop_oldest"]), KEYS),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_recency_keeps_the_order_an_ordered_dict_keeps(ops):
    model: OrderedDict[tuple[int, int, int], None] = OrderedDict()
    recency = Recency()
    for op, key in ops:
        if op == "to_end":
            model.pop(key, None)
            model[key] = None
            recency.to_end(key)
        elif op == "to_front":
            model[key] = None
            model.move_to_end(key, last=False)
            recency.to_front(key)
        elif op == "discard":
            assert recency.discard(key) == (model.pop(key, 1) is None)
        elif model:
            model.popitem(last=False)
            recency.pop_oldest()
        assert list(recency) == list(model)
        assert len(recency) == len(model)
        assert (key in recency) == (key in model)


def test_slots_are_reused_once_freed():
    recency = Recency()
    for i in range(100):
        recency.to_end((0, 0, i))
        if i >= 10:
            recency.pop_oldest()
    assert list(recency) == [(0, 0, i) for i in range(90, 100)]
    assert len(recency.handles._keys) <= 12  # the sentinel, ten keys, one freed slot


SHARED_OPS = st.lists(
    st.tuples(
        st.sampled_from(["to_end", "to_front", "add", "discard", "pop_oldest"]),
        st.integers(0, 3),  # which of the four lists
        st.tuples(st.integers(0, 1), st.integers(0, 1 << 192), st.integers(0, 3)),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(SHARED_OPS)
def test_lists_sharing_one_table_each_keep_their_own_order(ops):
    """Four lists over one Handles table: each is its own OrderedDict, and the table
    keeps exactly the keys some list holds (a key one list drops stays for the others)."""
    handles = Handles()
    lists = [Recency(handles, k) for k in range(4)]
    models: list[OrderedDict[tuple[int, int, int], None]] = [OrderedDict() for _ in range(4)]
    for op, k, key in ops:
        recency, model = lists[k], models[k]
        if op == "to_end":
            model.pop(key, None)
            model[key] = None
            recency.to_end(key)
        elif op == "to_front":
            model[key] = None
            model.move_to_end(key, last=False)
            recency.to_front(key)
        elif op == "add":
            model.setdefault(key, None)
            recency.add(key)
        elif op == "discard":
            assert recency.discard(key) == (model.pop(key, 1) is None)
        elif model:
            model.popitem(last=False)
            recency.pop_oldest()
        for other, other_model in zip(lists, models, strict=True):  # bounded: may loop if broken
            assert list(islice(other, len(other_model) + 1)) == list(other_model)
            assert len(other) == len(other_model)
            assert (key in other) == (key in other_model)
        assert len(handles) == len(set().union(*models))


def test_a_duel_and_its_ghosts_find_a_handle_once_and_free_it_with_its_last_list():
    duel = Duel()
    ghosts = Recency(duel.handles, GHOSTS)
    key = (0, 1 << 150, 3)
    ghosts.add(key)
    duel.put(key, 10, 0)  # into both shadows, beside the ghost
    assert len(duel.handles) == 1 and key in duel.lru and key in ghosts
    at = duel.handles.find(key)
    assert ghosts.discard_at(at)
    duel.get_at(key, at, False, 16, 0)  # off both shadows: no list holds it now
    assert at and duel.handles.find(key) == at  # still taken until settled
    duel.handles.settle(at)
    assert duel.handles.find(key) == 0 and len(duel.handles) == 0

"""The duel's ordered handle lists against the ``OrderedDict`` operations they stand for."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.setdueling import Recency

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
    assert len(recency._keys) <= 12  # the sentinel, ten keys, one freed slot

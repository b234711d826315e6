"""frontswap's frequency-aware writeback (``eviction="frequency"``, the default): of the
pages next to be written back, the one loaded least often lately goes; checked against a
reference model and in directed cases."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tmem
from tests.charges import room_for
from tmem.frontends import Frontswap
from tmem.frontends import frontswap as frontswap_module
from tmem.frontends.frontswap import LIMIT

SLOTS = 12
KEPT = 4


def page(n: int) -> bytes:
    return n.to_bytes(8, "little") * 512


def area(tmp_path: Path, name: str, kept: int, eviction: str, slots: int = SLOTS) -> Frontswap:
    """A swap area whose host holds exactly ``kept`` pages, written back in store order."""
    host = tmem.Host(room_for(kept, objects=16), compress=None)
    return Frontswap(
        host.connect("vm"), tmp_path / name, slots=slots, order="lru", eviction=eviction
    )


def in_tmem(swap: Frontswap, slot: int) -> bool:
    """True if loading ``slot`` comes from tmem (the load is made, and checked)."""
    loads = swap.stats()["loads"]
    assert swap.load(slot) == page(slot)
    return swap.stats()["loads"] > loads


class Model:
    """A swap area in front of a host that holds ``kept`` pages, exactly: pages in tmem
    in store order, every load of a slot counted (up to LIMIT, all halved once per
    ``window`` times the pages in tmem (at least 64) of loads); a store into a full
    tmem writes back, of the ``sample`` oldest pages, the least loaded, the oldest of
    those on ties."""

    def __init__(self, kept: int, sample: int, window: int) -> None:
        self.kept, self.sample, self.window = kept, sample, window
        self.tmem: OrderedDict[int, None] = OrderedDict()
        self.file: set[int] = set()
        self.loads = [0] * SLOTS
        self.counted = 0

    def store(self, slot: int) -> None:
        if len(self.tmem) >= self.kept:
            candidates = list(self.tmem)[: self.sample]
            victim = min(candidates, key=lambda s: (self.loads[s], candidates.index(s)))
            del self.tmem[victim]
            self.file.add(victim)
        self.tmem[slot] = None
        self.file.discard(slot)

    def load(self, slot: int) -> bool:
        """Count the load; True if tmem holds the page."""
        self.loads[slot] = min(LIMIT, self.loads[slot] + 1)
        self.counted += 1
        if self.counted >= self.window * max(64, len(self.tmem)):
            self.counted = 0
            self.loads = [n // 2 for n in self.loads]
        return slot in self.tmem

    def invalidate(self, slot: int) -> None:
        self.tmem.pop(slot, None)
        self.file.discard(slot)


ops = st.lists(
    st.tuples(st.sampled_from(["store", "load", "invalidate"]), st.integers(0, SLOTS - 1)),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops, sample=st.sampled_from([1, 2, 3, 64]), window=st.sampled_from([1, 10]))
def test_frequency_writeback_matches_the_reference_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], sample: int, window: int
) -> None:
    model = Model(KEPT, sample, window)
    saved = frontswap_module.SAMPLE, frontswap_module.WINDOW
    frontswap_module.SAMPLE, frontswap_module.WINDOW = sample, window
    try:
        with area(tmp_path_factory.mktemp("swap"), "swap", KEPT, "frequency") as swap:
            for op, slot in ops:
                held = slot in model.tmem or slot in model.file
                if op == "store" and not held:
                    swap.store(slot, page(slot))
                    model.store(slot)
                elif op == "load" and held:
                    assert in_tmem(swap, slot) == model.load(slot)
                elif op == "invalidate":
                    swap.invalidate(slot)
                    model.invalidate(slot)
                assert swap.stats()["tmem_pages"] == len(model.tmem)
            for slot in range(SLOTS):  # where every page is, without counting a load
                if slot in model.tmem or slot in model.file:
                    assert swap._in_tmem[slot] == (slot in model.tmem)
    finally:
        frontswap_module.SAMPLE, frontswap_module.WINDOW = saved


def fill_after_reuse(tmp_path: Path, eviction: str) -> Frontswap:
    """Slot 0 stored and loaded back three times, then four other pages stored into a
    tmem that holds four: one page must go to the swap file."""
    swap = area(tmp_path, eviction, KEPT, eviction)
    for _ in range(3):
        swap.store(0, page(0))
        assert in_tmem(swap, 0)
        swap.invalidate(0)  # swapped in: the slot is free again
    swap.store(0, page(0))
    for slot in range(1, KEPT + 1):
        swap.store(slot, page(slot))
    return swap


def test_a_page_loaded_often_outlives_newer_pages_loaded_never(tmp_path: Path) -> None:
    with fill_after_reuse(tmp_path, "frequency") as swap:
        assert in_tmem(swap, 0)  # kept: the newer page 1, loaded never, went instead
        assert not in_tmem(swap, 1)
        assert swap.stats()["written_back"] == 1
    with fill_after_reuse(tmp_path, "lru") as swap:
        assert not in_tmem(swap, 0)  # LRU writes back the oldest store, however loaded
        assert in_tmem(swap, 1)


def test_only_the_pages_next_to_go_are_weighed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frontswap_module, "SAMPLE", 2)
    with area(tmp_path, "swap", 3, "frequency") as swap:
        for slot in (0, 1):  # loaded once each
            swap.store(slot, page(slot))
            assert in_tmem(swap, slot)
            swap.invalidate(slot)
        for slot in (0, 1, 2):
            swap.store(slot, page(slot))
        swap.store(3, page(3))  # full: of the 2 oldest (0, 1, both loaded once), 0 goes
        assert [in_tmem(swap, slot) for slot in (1, 2, 3)] == [True, True, True]
        assert not in_tmem(swap, 0)  # page 2, loaded never, was not among the two weighed


def test_counts_are_halved_each_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontswap_module, "WINDOW", 1)  # halved every 64 loads
    with area(tmp_path, "swap", 2, "frequency") as swap:
        swap.store(0, page(0))
        assert in_tmem(swap, 0)  # slot 0: one load
        swap.invalidate(0)
        swap.store(0, page(0))
        swap.store(1, page(1))
        for _ in range(63):  # slot 1: 15 loads (the limit), then all halved at the 64th
            assert in_tmem(swap, 1)
        assert swap._faults is not None and swap._faults[0] == 0 and swap._faults[1] == 7
        swap.store(2, page(2))  # full: 0 (now 0 loads) goes, not 1
        assert in_tmem(swap, 1) and in_tmem(swap, 2) and not in_tmem(swap, 0)


def test_a_bad_eviction_is_refused(tmp_path: Path) -> None:
    host = tmem.Host(1 << 20)
    with pytest.raises(tmem.InvalidArgument, match="eviction"):
        Frontswap(host.connect("vm"), tmp_path / "swap", slots=8, eviction="mru")


def test_a_load_from_the_swap_file_counts_too(tmp_path: Path) -> None:
    with area(tmp_path, "swap", 2, "frequency") as swap:
        for slot in (0, 1, 2):  # 0, the oldest, goes to the swap file
            swap.store(slot, page(slot))
        assert not in_tmem(swap, 0)  # a load from the file: slot 0 is reused
        for slot in (0, 1, 2):
            swap.invalidate(slot)
        for slot in (0, 1, 2):  # full at 2: of 0 (one load) and 1 (none), 1 goes
            swap.store(slot, page(slot))
        assert in_tmem(swap, 0) and not in_tmem(swap, 1)

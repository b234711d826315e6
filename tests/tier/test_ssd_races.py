"""The SSD tier's loads against what runs between two of their steps.

A load runs outside the tier's lock, so other threads' work may fall between
any two of its bytecode instructions.  These tests put it there on purpose:
a trace function runs an action before every instruction of the load's
frames (one instruction at a time, in this thread), so each interleaving is
tried, not hoped for.  They need the tier's Python source (not a compiled
build of ``tmem.tier.ssd``).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

import pytest

from tmem.tier.base import Demotion
from tmem.tier.ssd import SsdTier

SEG = 128 << 10


def blob(seed: int, size: int = 3000) -> bytes:
    return random.Random(seed).randbytes(size)


def codes(*functions: Any) -> set[CodeType]:
    """The code objects of the tier's methods ``functions``; skip if they are compiled."""
    found = {getattr(f, "__code__", None) for f in functions}
    if None in found:
        pytest.skip("tmem.tier.ssd is compiled here: no bytecode to step through")
    return found  # type: ignore[return-value]


def interleaved(where: set[CodeType], action: Callable[[], None], call: Callable[[], Any]) -> Any:
    """``call()``, with ``action()`` run before each bytecode instruction of its frames
    that run one of ``where``."""

    def each(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            action()
        return each

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code in where:
            frame.f_trace_opcodes = True
            return each
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        return call()
    finally:
        sys.settrace(previous)


@pytest.fixture
def tier(tmp_path):
    made = SsdTier(str(tmp_path), 8 * SEG, segment_size=SEG)
    yield made
    made.close()


def test_loads_counted_in_python_while_compiled_loads_count_lose_no_update(tier):
    # A load in Python counts under the tier's lock; the compiled load counts holding only
    # the interpreter.  Compiled loads run between each two instructions of one in Python:
    # every load and every byte read is counted.
    if tier.quick_load is None:
        pytest.skip("the compiled load is not used here")
    slow, quick = Demotion(1, 1, blob(1), True), Demotion(2, 2, blob(2), True)
    slow_loc, quick_loc = tier.store([slow, quick])
    compiled = 0

    def compiled_load() -> None:
        nonlocal compiled
        assert tier.load(quick_loc, quick.tag) == quick.payload
        compiled += 1

    before = tier.stats()
    where = codes(SsdTier._load_carefully)
    assert interleaved(where, compiled_load, lambda: tier._load_carefully(slow_loc, 1)) == blob(1)
    after = tier.stats()
    assert compiled > 20
    assert after["loads"] - before["loads"] == compiled + 1
    assert after["bytes_read"] - before["bytes_read"] == (compiled + 1) * 4096


def o_direct(fd: int) -> bool:
    with open(f"/proc/self/fdinfo/{fd}") as fh:
        flags = int(fh.read().split("flags:")[1].split()[0], 8)
    return bool(flags & os.O_DIRECT)


def load_switching_at(path: str, kind: str, step: int) -> bool:
    """Load a page with the tier's switch away from ``O_DIRECT`` run before the
    ``step``-th instruction of the load; whether the load ran that far."""
    where = codes(SsdTier.load, SsdTier._load_carefully, SsdTier._read_checked)
    tier = SsdTier(path, 8 * SEG, segment_size=SEG)
    try:
        if not tier.direct:
            pytest.skip("the file system refuses O_DIRECT: nothing to switch from")
        if kind == "python":
            tier.read_record = tier.quick_load = None
        elif tier.quick_load is None:
            pytest.skip("tmem.tier._fastload was not built")
        page = Demotion(1, 1, blob(1), True)
        [loc] = tier.store([page])
        seen = 0

        def switch_at_step() -> None:
            nonlocal seen
            if seen == step:
                tier._reopen_buffered()
            seen += 1

        assert interleaved(where, switch_at_step, lambda: tier.load(loc, 1)) == page.payload
        if seen <= step:
            return False
        assert not tier.direct and not o_direct(tier.fd)
        assert tier.load(loc, 1) == page.payload and tier.stats()["load_failures"] == 0
        return True
    finally:
        tier.close()


@pytest.mark.parametrize("kind", ["compiled", "python"])
def test_a_switch_away_from_o_direct_at_any_point_of_a_load_never_fails_it(tmp_path, kind):
    # A file system may refuse O_DIRECT only at write time; the tier then goes on through
    # the page cache.  That switch may fall anywhere in a load running outside the lock,
    # even between its taking the descriptor and reading with it: the load still reads
    # the page (the descriptor it took is never closed under it).
    step = 0
    while load_switching_at(str(tmp_path), kind, step):  # until every point was tried
        step += 1
    assert step > 10

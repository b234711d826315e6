"""Self-shrinking: frontswap gives tmem back once it stops growing, as Linux's policy does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import tmem
from tmem.frontends import Frontswap, SelfShrink

PS = 4096


def test_no_shrink_while_frontswap_grows_or_is_empty() -> None:
    policy = SelfShrink(inertia=2, hysteresis=4)
    assert [policy.step(n) for n in (0, 0, 10, 20, 30, 0, 0, 0)] == [None] * 8


def test_after_inertia_quiet_intervals_it_shrinks_by_one_hysteresisth() -> None:
    policy = SelfShrink(inertia=3, hysteresis=20)
    assert policy.step(1000) is None  # growth resets the count
    assert policy.step(1000) is None
    assert policy.step(1000) is None
    assert policy.step(1000) == 950  # third quiet interval: 1000 - 1000 // 20
    assert policy.step(950) is None  # and the count starts again
    assert policy.step(950) is None
    assert policy.step(950) == 903
    assert policy.step(951) is None  # growing again
    assert policy.step(951) is None


def test_small_frontswap_shrinks_to_zero_and_knobs_change_at_run_time() -> None:
    policy = SelfShrink(inertia=1, hysteresis=20)
    assert policy.step(15) is None  # growth from 0
    assert policy.step(15) == 0
    policy.inertia = 2
    policy.hysteresis = 2
    assert policy.step(100) is None
    assert policy.step(100) is None
    assert policy.step(100) == 50
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(tmem.InvalidArgument):
            SelfShrink(inertia=bad)  # type: ignore[arg-type]
        with pytest.raises(tmem.InvalidArgument):
            policy.hysteresis = bad  # type: ignore[assignment]


def page(slot: int) -> bytes:
    return (b"%06d" % slot) * (PS // 6) + bytes(PS % 6)


def test_selfshrink_steps_move_pages_to_the_swap_file(tmp_path: Path, client: Any) -> None:
    with Frontswap(
        client, tmp_path / "swap", slots=100, selfshrink=SelfShrink(inertia=2, hysteresis=10)
    ) as swap:
        for slot in range(100):
            swap.store(slot, page(slot))
        moved = [swap.selfshrink_step() for _ in range(7)]
        assert moved == [0, 0, 10, 0, 9, 0, 8]  # 100 -> 90 -> 81 -> 73
        assert swap.stats()["tmem_pages"] == client.stats()["pages"] == 73
        assert [swap.load(s) for s in range(100)] == [page(s) for s in range(100)]


def test_the_selfshrink_thread_empties_an_idle_frontswap(tmp_path: Path, client: Any) -> None:
    with Frontswap(
        client, tmp_path / "swap", slots=50, selfshrink=SelfShrink(inertia=1, hysteresis=2)
    ) as swap:
        for slot in range(50):
            swap.store(slot, page(slot))
        swap.start_selfshrink(0.01)
        deadline = time.monotonic() + 30
        while swap.stats()["tmem_pages"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert swap.stats()["tmem_pages"] == 0
        assert swap.stats()["selfshrink_steps"] >= 2
        assert [swap.load(s) for s in range(50)] == [page(s) for s in range(50)]
    with pytest.raises(tmem.InvalidArgument):
        swap.start_selfshrink(0)

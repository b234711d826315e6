"""Self-shrinking: frontswap gives tmem back once it stops growing, as Linux's policy does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import tmem
from tests.charges import room_for
from tmem.engine import OBJECT_METADATA_BYTES, PAGE_METADATA_BYTES
from tmem.frontends import Frontswap, SelfShrink
from tmem.frontends.frontswap import TARGET_SHRINK_PART

#: Pages one guest stores alone to fill a host of ``room_for(64, objects=32, pools=2)``:
#: 64, and as many more as the room left for a second guest's 16 objects holds.
FILLED = 64 + 16 * OBJECT_METADATA_BYTES // (4096 + PAGE_METADATA_BYTES)

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
        client,
        tmp_path / "swap",
        slots=100,
        selfshrink=SelfShrink(inertia=2, hysteresis=10),
        shrink_to_target=False,  # Linux's policy, not the host's target
    ) as swap:
        for slot in range(100):
            swap.store(slot, page(slot))
        moved = [swap.selfshrink_step() for _ in range(7)]
        assert moved == [0, 0, 10, 0, 9, 0, 8]  # 100 -> 90 -> 81 -> 73
        assert swap.stats()["tmem_pages"] == client.stats()["pages"] == 73
        assert [swap.load(s) for s in range(100)] == [page(s) for s in range(100)]


def test_the_selfshrink_thread_empties_an_idle_frontswap(tmp_path: Path, client: Any) -> None:
    with Frontswap(
        client,
        tmp_path / "swap",
        slots=50,
        selfshrink=SelfShrink(inertia=1, hysteresis=2),
        shrink_to_target=False,
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


def test_a_client_over_its_persistent_target_shrinks_toward_it_oldest_first(
    tmp_path: Path,
) -> None:
    # room for 64 pages of each guest's 16 objects (frontswap's swizzle) and pools
    host = tmem.Host(room_for(64, objects=32, pools=2), compress=None)
    first = Frontswap(host.connect("first"), tmp_path / "a", slots=100)
    try:
        filled = FILLED
        for slot in range(filled):  # alone, it fills the host
            first.store(slot, page(slot))
        assert first.stats()["tmem_pages"] == filled
        assert first.selfshrink_step() == 0  # alone: its target is the whole host
        late = Frontswap(host.connect("late"), tmp_path / "b", slots=100)
        try:
            late.store(0, page(1000))  # refused: the host is full of first's pages
            assert late.stats()["failed_stores"] == 1
            assert first.selfshrink_step() == filled // TARGET_SHRINK_PART  # at most that a step
            for step in range(1, 40):  # the late guest uses the room first gives back
                late.store(step, page(1000 + step))
                first.selfshrink_step()
            assert first.stats()["tmem_pages"] == 32  # down to its target, half the host
            assert late.stats()["tmem_pages"] == 32  # and the late guest the rest
            shrunk = first.stats()["target_shrunk"]
            assert shrunk == filled - 32
            # Oldest first: the first slots went to the swap file.
            held = [first.holds_in_file(s) for s in range(filled)]
            assert held == [True] * (filled - 32) + [False] * 32
            assert [first.load(s) for s in range(filled)] == [page(s) for s in range(filled)]
        finally:
            late.close()
    finally:
        first.close()


def test_clean_offers_make_tmem_a_victim_cache_of_the_swap_cache(tmp_path: Path) -> None:
    host = tmem.Host(room_for(8, objects=8), compress=None)
    with Frontswap(host.connect("vm"), tmp_path / "swap", slots=40) as swap:
        host.set_client("vm", frozen=True)
        for slot in range(4):  # refused: written to the swap file
            swap.store(slot, page(slot))
        writes = swap.stats()["swap_writes"]
        assert writes == 4 and all(swap.holds_in_file(s) for s in range(4))
        assert not swap.offer(1, page(1))  # refused: costs no write
        host.set_client("vm", frozen=False)
        assert swap.offer(0, page(0))  # taken, and the file keeps its copy
        assert swap.stats()["swap_writes"] == writes and swap.holds_in_file(0)
        reads = swap.stats()["swap_reads"]
        assert swap.load(0) == page(0) and swap.stats()["swap_reads"] == reads  # from tmem
        swap.drop_from_tmem(0)  # an exclusive load: tmem forgets, the file's copy stays
        assert swap.stats()["tmem_pages"] == 0
        assert swap.load(0) == page(0) and swap.stats()["swap_reads"] == reads + 1
        assert not swap.offer(5, page(5))  # the file holds nothing for slot 5: no offer
        assert swap.stats()["clean_stored"] == 1


def test_a_refused_store_moves_up_to_two_oldest_pages_to_the_swap_file(tmp_path: Path) -> None:
    # room for 64 pages of each guest's 16 objects (frontswap's swizzle) and pools
    host = tmem.Host(room_for(64, objects=32, pools=2), compress=None)
    with Frontswap(host.connect("first"), tmp_path / "a", slots=100) as first:
        for slot in range(FILLED):  # alone, it fills the host
            first.store(slot, page(slot))
        with Frontswap(host.connect("late"), tmp_path / "b", slots=10) as late:
            late.store(0, page(1000))  # refused, but now two clients are active
            first.store(FILLED, page(FILLED))  # over its target: two pages out, and still refused
            assert first.stats()["written_back"] == 2 and first.holds_in_file(FILLED)
            assert [first.holds_in_file(s) for s in range(3)] == [True, True, False]
            nxt = FILLED + 1
            first.store(nxt, page(nxt))  # below the host's headroom again: one out, one in
            assert first.stats()["written_back"] == 3 and not first.holds_in_file(nxt)
            assert first.stats()["tmem_pages"] == FILLED - 2
            assert first.load(nxt) == page(nxt) and first.stats()["swap_reads"] == 0
            assert late.stats()["failed_stores"] == 1


def test_a_clean_offer_to_a_full_host_replaces_the_oldest_page(tmp_path: Path) -> None:
    host = tmem.Host(room_for(8, objects=8), compress=None)
    with Frontswap(host.connect("vm"), tmp_path / "swap", slots=40) as swap:
        host.set_client("vm", frozen=True)
        swap.store(20, page(20))  # refused: only the swap file holds it
        host.set_client("vm", frozen=False)
        for slot in range(8):  # the host is full of this area's pages
            swap.store(slot, page(slot))
        assert swap.offer(20, page(20))  # the oldest page made room for it
        assert swap.holds_in_file(0) and swap.stats()["written_back"] == 1
        reads = swap.stats()["swap_reads"]
        assert swap.load(20) == page(20) and swap.stats()["swap_reads"] == reads
        assert swap.load(0) == page(0) and swap.stats()["swap_reads"] == reads + 1

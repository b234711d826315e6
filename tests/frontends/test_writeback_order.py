"""frontswap's writeback order: ``lru`` writes back the oldest store, ``adaptive``
switches to the reuse order when that misses less, and no page is ever lost."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest

import tmem
from tests.charges import room_for
from tmem.frontends import Frontswap


def page(n: int) -> bytes:
    return n.to_bytes(8, "little") * 512


def loop_hits(tmp_path: Path, order: str, held: int, loop: int, rounds: int) -> int:
    """Pages loaded back from tmem by a guest of 4 resident pages that walks a loop of
    ``loop`` pages ``rounds`` times, with tmem room for ``held`` of them."""
    host = tmem.Host(room_for(held, objects=16), compress=None)
    resident: OrderedDict[int, None] = OrderedDict()
    with Frontswap(host.connect("vm"), tmp_path / order, slots=loop, order=order) as swap:
        swapped: set[int] = set()
        for _ in range(rounds):
            for slot in range(loop):
                if slot in resident:
                    resident.move_to_end(slot)
                    continue
                if slot in swapped:
                    assert swap.load(slot) == page(slot)  # never lost, never wrong
                    swap.invalidate(slot)
                    swapped.discard(slot)
                resident[slot] = None
                if len(resident) > 4:
                    victim, _ = resident.popitem(last=False)
                    swap.store(victim, page(victim))
                    swapped.add(victim)
        return swap.stats()["loads"]


def test_a_loop_longer_than_tmem_keeps_part_of_itself_under_the_adaptive_order(
    tmp_path: Path,
) -> None:
    held, loop, rounds = 100, 200, 20
    assert loop_hits(tmp_path, "lru", held, loop, rounds) == 0  # LRU keeps nothing
    # adaptive: most of what tmem holds comes round again once the duel has switched
    assert loop_hits(tmp_path, "adaptive", held, loop, rounds) > 0.6 * held * rounds


def test_a_bad_order_is_refused(tmp_path: Path) -> None:
    host = tmem.Host(1 << 20)
    with pytest.raises(tmem.InvalidArgument, match="order"):
        Frontswap(host.connect("vm"), tmp_path / "swap", slots=8, order="mru")

"""Releases give back exactly the ranges named, in batches or one by one, and never a live slot."""

from __future__ import annotations

import importlib
import mmap
import random
from typing import Any

import pytest

from tmem.loader import pure_requested
from tmem.store.arena import SlotArena
from tmem.store.release import PIDFD_SELF, RELEASER, Releaser

PAGE = mmap.PAGESIZE


def _c_module() -> Any:
    if pure_requested():
        pytest.skip("TMEM_PURE=1 runs the pure-Python release")
    try:
        return importlib.import_module("tmem.store._release")
    except ImportError:
        pytest.skip("tmem.store._release was not built (no C compiler at install time)")


def _filled_chunks(count: int, pages: int) -> list[mmap.mmap]:
    chunks = [mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
              for _ in range(count)]  # fmt: skip
    for c, chunk in enumerate(chunks):
        for p in range(pages):
            chunk[p * PAGE : (p + 1) * PAGE] = bytes([1 + (c * 7 + p) % 250]) * PAGE
    return chunks


def _random_ranges(chunks: list[mmap.mmap], pages: int, rng: random.Random) -> list[int]:
    """Disjoint (chunk, offset, length) triples, some a page, some longer."""
    ranges: list[int] = []
    for c in range(len(chunks)):
        p = rng.randrange(3)
        while p < pages:
            length = min(rng.choice((1, 1, 1, 2, 5)), pages - p)
            ranges += (c, p * PAGE, length * PAGE)
            p += length + 1 + rng.randrange(3)
    return ranges


def _check(chunks: list[mmap.mmap], pages: int, ranges: list[int]) -> None:
    """Released pages read zero; every other page holds its bytes."""
    released = set()
    for i in range(0, len(ranges), 3):
        c, offset, length = ranges[i : i + 3]
        released.update((c, offset // PAGE + k) for k in range(length // PAGE))
    for c, chunk in enumerate(chunks):
        for p in range(pages):
            want = bytes(PAGE) if (c, p) in released else bytes([1 + (c * 7 + p) % 250]) * PAGE
            assert chunk[p * PAGE : (p + 1) * PAGE] == want, (c, p)


def _release_with(kind: str, chunks: list[mmap.mmap], ranges: list[int]) -> tuple[int, int]:
    """(calls, refusal errno) releasing ``ranges`` the way ``kind`` names."""
    if kind == "python":
        return Releaser(None).release(chunks, ranges), 0
    module = _c_module()
    pidfd = {"batched": PIDFD_SELF, "one_by_one": None, "refused": -1}[kind]
    calls, refusal = module.release(chunks, ranges, pidfd)
    return calls, refusal


@pytest.mark.parametrize("kind", ["batched", "one_by_one", "refused", "python"])
def test_a_release_gives_back_exactly_the_ranges_named(kind: str) -> None:
    pages = 96
    chunks = _filled_chunks(3, pages)
    ranges = _random_ranges(chunks, pages, random.Random(kind))
    calls, refusal = _release_with(kind, chunks, ranges)
    _check(chunks, pages, ranges)
    count = len(ranges) // 3
    if kind == "batched" and not refusal:  # the kernel took them all in one call
        assert calls == 1
    elif kind == "refused":  # -1 is no pidfd: refused, and done one madvise each
        assert refusal == 9 and calls == count  # EBADF
    else:
        assert calls == count


def test_more_ranges_than_one_call_takes_go_in_batches_of_1024() -> None:
    module = _c_module()
    pages = 2600
    chunks = _filled_chunks(1, pages)
    ranges: list[int] = []
    for p in range(0, pages, 2):
        ranges += (0, p * PAGE, PAGE)
    calls, refusal = module.release(chunks, ranges, PIDFD_SELF)
    _check(chunks, pages, ranges)
    assert calls == (2 if refusal == 0 else pages // 2)


@pytest.mark.parametrize(
    "bad",
    [(0, 100, PAGE), (0, 0, 9 * PAGE), (1, 0, PAGE), (0, -PAGE, PAGE), (0, 0, 0), (-1, 0, PAGE)],
)
@pytest.mark.parametrize("kind", ["batched", "one_by_one"])
def test_a_range_outside_its_chunk_or_off_a_page_is_refused_before_any_release(
    bad: tuple[int, int, int], kind: str
) -> None:
    module = _c_module()
    chunks = _filled_chunks(1, 8)
    ranges = [0, 0, PAGE, *bad]  # a good range first: it must not be released either
    with pytest.raises(ValueError):
        module.release(chunks, ranges, PIDFD_SELF if kind == "batched" else None)
    _check(chunks, 8, [])


def test_a_refused_batch_makes_the_releaser_release_one_by_one_from_then_on() -> None:
    class Refusing:
        """A module whose kernel refuses process_madvise (as before Linux 6.15)."""

        def __init__(self) -> None:
            self.pidfds: list[int | None] = []

        def release(
            self, chunks: list[mmap.mmap], ranges: list[int], pidfd: Any
        ) -> tuple[int, int]:  # noqa: E501
            self.pidfds.append(pidfd)
            Releaser(None).release(chunks, ranges)
            return len(ranges) // 3, 22 if pidfd is not None else 0  # EINVAL

    module = Refusing()
    releaser = Releaser(module)
    chunks = _filled_chunks(1, 8)
    releaser.release(chunks, [0, 0, PAGE])
    releaser.release(chunks, [0, 2 * PAGE, PAGE])
    assert module.pidfds == [PIDFD_SELF, None]
    assert not releaser.batched and releaser.refusal == 22
    _check(chunks, 8, [0, 0, PAGE, 0, 2 * PAGE, PAGE])


@pytest.mark.parametrize("seed", range(4))
def test_live_slots_read_back_right_through_random_frees_and_releases(seed: int) -> None:
    """A model of the arena's slots: after every free (and the releases it makes),
    each live slot holds what was written; the freed slots kept resident stay within
    ``hot_limit`` and the slots in use; released slots read zero."""
    rng = random.Random(seed)
    arena = SlotArena(PAGE, hot_limit=4, chunk_bytes=16 * PAGE)
    live: dict[int, bytes] = {}
    calls = RELEASER.calls
    for step in range(1500):
        if live and (rng.random() < 0.45 or len(live) > 400):
            slot = rng.choice(list(live))
            del live[slot]
            arena.free(slot)
            if arena.used:
                assert len(arena.hot) <= max(arena.hot_limit, arena.used * arena.free_ratio)
        else:
            slot = arena.alloc()
            assert slot not in live
            data = rng.randbytes(8) * (PAGE // 8)
            arena.write(slot, data)
            live[slot] = data
        if step % 97 == 0 or not live:
            assert all(arena.read(s, PAGE) == d for s, d in live.items())
    for slot in rng.sample(list(live), max(0, len(live) - 20)):  # the store shrinks
        del live[slot]
        arena.free(slot)
    assert all(arena.read(s, PAGE) == d for s, d in live.items())
    assert RELEASER.calls > calls  # the bound was reached and slots went back
    released = [s for s in arena._cold if s not in live]
    assert released and all(arena.read(s, PAGE) == bytes(PAGE) for s in released)


def test_a_random_order_flush_of_everything_keeps_no_more_free_than_in_use() -> None:
    arena = SlotArena(PAGE, hot_limit=8, chunk_bytes=64 * PAGE)
    slots = [arena.alloc() for _ in range(2000)]
    for slot in slots:
        arena.write(slot, b"x" * PAGE)
    random.Random(5).shuffle(slots)
    calls = RELEASER.calls
    for n, slot in enumerate(slots[:-10], 1):
        arena.free(slot)
        in_use = len(slots) - n
        assert arena.resident_bytes <= (in_use + max(8, in_use)) * PAGE + arena.per_chunk * PAGE
    assert arena.resident_bytes <= (10 + 10) * PAGE + arena.per_chunk * PAGE
    # few release calls: each release takes every free run at once (one call a batch
    # where the kernel batches, one a run where it does not)
    assert RELEASER.calls - calls < (40 if RELEASER.batched else 1500)
    assert all(arena.read(s, PAGE) == b"x" * PAGE for s in slots[-10:])

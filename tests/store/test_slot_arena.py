"""Slots in mmap chunks: contents, reuse, and memory handed back to the kernel."""

from __future__ import annotations

import os

from tmem.store.arena import SlotArena


def test_slots_hold_their_bytes_across_chunks():
    arena = SlotArena(4096, chunk_bytes=4 * 4096)
    slots = [arena.alloc() for _ in range(10)]
    pages = {s: os.urandom(4096) for s in slots}
    for slot, data in pages.items():
        arena.write(slot, data)
    assert all(arena.read(s, 4096) == d for s, d in pages.items())
    assert arena.mapped_bytes == 3 * 4 * 4096 and arena.used == 10


def test_freed_slots_are_reused_last_freed_first():
    arena = SlotArena(512)
    arena.alloc()  # stays in use
    a, b = arena.alloc(), arena.alloc()
    arena.free(a)
    arena.free(b)
    assert arena.alloc() == b and arena.alloc() == a


def test_freeing_most_slots_hands_memory_back():
    arena = SlotArena(4096, hot_limit=8)
    slots = [arena.alloc() for _ in range(1000)]
    for slot in slots:
        arena.write(slot, b"x" * 4096)
    # the first chunk is committed slot by slot, later ones whole (at most one chunk ahead)
    assert 1000 * 4096 <= arena.resident_bytes < 1000 * 4096 + arena.per_chunk * 4096
    for slot in slots[:990]:
        arena.free(slot)
    assert arena.resident_bytes <= (10 + 2 * 8) * 4096 + arena.per_chunk * 4096
    reused = [arena.alloc() for _ in range(990)]
    assert sorted(reused + slots[990:]) == sorted(slots)  # no new slot was needed
    assert all(arena.read(s, 4096) == b"x" * 4096 for s in slots[990:])


def test_released_slot_reads_zero_until_written():
    arena = SlotArena(4096, hot_limit=0)
    slots = [arena.alloc() for _ in range(4)]
    for slot in slots:
        arena.write(slot, b"y" * 4096)
    for slot in slots:
        arena.free(slot)
    slot = arena.alloc()
    assert arena.read(slot, 4096) in (b"y" * 4096, bytes(4096))
    arena.write(slot, b"z" * 4096)
    assert arena.read(slot, 4096) == b"z" * 4096


def test_an_emptied_arena_unmaps_every_chunk():
    arena = SlotArena(4096, chunk_bytes=4 * 4096)
    slots = [arena.alloc() for _ in range(10)]
    for slot in slots:
        arena.write(slot, b"x" * 4096)
    for slot in slots:
        arena.free(slot)
    assert arena.mapped_bytes == 0 and arena.resident_bytes == 0
    slot = arena.alloc()  # and starts afresh
    arena.write(slot, b"y" * 4096)
    assert arena.read(slot, 4096) == b"y" * 4096 and arena.mapped_bytes == 4 * 4096

"""Fixed-size slots carved out of large anonymous memory maps.

A :class:`SlotArena` hands out slots of one size from 1 MiB chunks mapped with
``mmap``, so a stored page costs no Python object of its own and the memory is
committed only when a slot is first written.  Freed slots are reused first
(last freed, first reused), so resident memory never exceeds the most slots
ever in use at once.

Freed slots stay resident for reuse (a slot written again after a release
costs a page fault, about 3 µs here) until they pass both ``hot_limit`` and
``free_ratio`` times the slots in use (:data:`FREE_RATIO`, 1: the memory held
for freed slots never exceeds the memory of the slots in use, plus
``hot_limit`` slots).  Then every one of them goes back to the kernel at once
(``MADV_DONTNEED``), each run of free neighbours, those released before
included, as one range, and the ranges in as few system calls as
:mod:`tmem.store.release` can make (one per 1024 ranges with
``process_madvise``).  Releasing all at once, and only when the bound is
reached, makes releases rare and their ranges long while a store shrinks: in a
random-order flush of everything the freed slots are isolated at first, and
runs of neighbours grow as the store empties.  The last slot freed unmaps every
chunk.  Slots must cover whole OS pages to be released at all.

An arena's first chunk is committed page by page as slots are first written;
every later chunk is mapped with ``MAP_POPULATE``, so a growing arena takes its
memory from the kernel in one call per chunk instead of one page fault per
slot (a fault costs more than the kernel's own zeroing of the page).  At most
one chunk ahead of the slots in use is committed that way.
"""

from __future__ import annotations

import contextlib
import mmap
from array import array
from typing import Final

from tmem.store.release import RELEASER, trim_heap

CHUNK_BYTES: Final = 1 << 20
#: Freed slots kept resident (beyond ``hot_limit``): at most this many times the slots in use.
FREE_RATIO: Final = 1
_PAGESIZE: Final = mmap.PAGESIZE
_CAN_RELEASE: Final = hasattr(mmap, "MADV_DONTNEED")
_PRIVATE: Final = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)


def anonymous_map(size: int, populate: bool = False) -> mmap.mmap:
    """A private anonymous mapping of ``size`` bytes, committed at once with ``populate``.

    Private, not shared: the pages of a shared anonymous map live in shmem, and
    ``MADV_DONTNEED`` only unmaps them from the process there (RSS drops, the
    machine's memory does not).  A private map's pages are freed by it.
    """
    return mmap.mmap(-1, size, flags=_PRIVATE | (_POPULATE if populate else 0))


class SlotArena:
    """Slots of ``slot_size`` bytes, addressed by small integers."""

    __slots__ = (
        "slot_size",
        "per_chunk",
        "hot_limit",
        "free_ratio",
        "chunks",
        "hot",
        "_cold",
        "_released",
        "_next",
        "_releasable",
        "used",
    )

    def __init__(
        self,
        slot_size: int,
        hot_limit: int = 64,
        chunk_bytes: int = CHUNK_BYTES,
        free_ratio: int = FREE_RATIO,
    ):
        if slot_size <= 0 or slot_size > chunk_bytes:
            raise ValueError(f"slot size {slot_size} does not fit a {chunk_bytes}-byte chunk")
        self.slot_size = slot_size
        self.per_chunk = chunk_bytes // slot_size
        self.hot_limit = hot_limit
        self.free_ratio = free_ratio
        self.chunks: list[mmap.mmap] = []
        #: Freed slots, still resident, reused first (last freed first).  RamStore
        #: pops and appends here itself while no release is due (its hot path).
        self.hot: list[int] = []
        # freed and handed back to the kernel (an array: 8 bytes a slot, not a boxed int)
        self._cold = array("q")
        self._released = bytearray()  # 1 for each slot in ``_cold``, by slot number
        self._next = 0  # slots below this were handed out at least once
        self._releasable = _CAN_RELEASE and slot_size % _PAGESIZE == 0
        self.used = 0

    def alloc(self) -> int:
        """Return a free slot number (its old contents are unspecified)."""
        self.used += 1
        if self.hot:
            return self.hot.pop()
        if self._cold:
            slot = self._cold.pop()
            self._released[slot] = 0
            return slot
        slot = self._next
        self._next = slot + 1
        if slot >= len(self.chunks) * self.per_chunk:
            self.chunks.append(anonymous_map(self.per_chunk * self.slot_size, bool(self.chunks)))
            self._released.extend(bytes(self.per_chunk))
        return slot

    def free(self, slot: int) -> None:
        """Give a slot back; its bytes may be released to the kernel (see the module).

        The last slot given back unmaps every chunk and forgets the free lists.
        """
        self.used = used = self.used - 1
        if not used:
            self._empty()
            return
        hot = self.hot
        hot.append(slot)
        n = len(hot)
        if n > self.hot_limit and n > used * self.free_ratio and self._releasable:
            self._release()

    def _empty(self) -> None:
        """Nothing is in use: unmap every chunk, start afresh, trim the heap."""
        for chunk in self.chunks:
            with contextlib.suppress(BufferError):  # a view still open keeps its chunk
                chunk.close()
        big = len(self.chunks) > 1
        self.chunks = []
        self.hot = []
        self._cold = array("q")
        self._released = bytearray()
        self._next = 0
        if big:  # the free lists and maps were large: give their heap back too
            trim_heap()

    def _release(self) -> None:
        """Hand every freed slot still resident back to the kernel.

        Each run of them within a chunk goes as one range, with the slots
        released before that lie between them (the kernel skips pages it no
        longer holds): the more of the arena is free, the longer the runs.
        """
        hot, released = self.hot, self._released
        hot.sort()
        per, size = self.per_chunk, self.slot_size
        ranges: list[int] = []  # (chunk, offset, length) triples
        first = last = hot[0]
        for slot in hot:
            released[slot] = 1
            if slot // per == first // per and (
                slot == last + 1 or released.find(0, last + 1, slot) < 0
            ):
                last = slot  # a neighbour, or only released slots between
                continue
            chunk = first // per
            ranges += (chunk, (first - chunk * per) * size, (last - first + 1) * size)
            first = last = slot
        chunk = first // per
        ranges += (chunk, (first - chunk * per) * size, (last - first + 1) * size)
        RELEASER.release(self.chunks, ranges)
        self._cold.extend(hot)
        hot.clear()

    def write(self, slot: int, data: bytes | memoryview, offset: int = 0) -> None:
        """Copy ``data`` into the slot at ``offset`` (it must fit)."""
        per = self.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) * self.slot_size + offset
        self.chunks[chunk][start : start + len(data)] = data

    def read(self, slot: int, length: int, offset: int = 0) -> bytes:
        """Return a copy of ``length`` bytes of the slot from ``offset``."""
        per = self.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) * self.slot_size + offset
        return self.chunks[chunk][start : start + length]

    @property
    def resident_bytes(self) -> int:
        """Bytes of slots handed out (or committed ahead) and not given back: an RSS bound."""
        touched = self._next if len(self.chunks) < 2 else len(self.chunks) * self.per_chunk
        return (touched - len(self._cold)) * self.slot_size

    @property
    def mapped_bytes(self) -> int:
        """Address space mapped for this arena (not all of it resident)."""
        return len(self.chunks) * self.per_chunk * self.slot_size

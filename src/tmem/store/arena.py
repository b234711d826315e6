"""Fixed-size slots carved out of large anonymous memory maps.

A :class:`SlotArena` hands out slots of one size from 1 MiB chunks mapped with
``mmap``, so a stored page costs no Python object of its own and the memory is
committed only when a slot is first written.  Freed slots are reused first
(last freed, first reused), so resident memory never exceeds the most slots
ever in use at once.  Freed slots beyond ``hot_limit`` and a quarter of the
slots in use are handed back to the kernel with ``MADV_DONTNEED``, in sorted
batches so that neighbours go in one call, so resident memory also follows
the slots in use when they shrink (slots must cover whole OS pages for that).

An arena's first chunk is committed page by page as slots are first written;
every later chunk is mapped with ``MAP_POPULATE``, so a growing arena takes its
memory from the kernel in one call per chunk instead of one page fault per
slot (a fault costs more than the kernel's own zeroing of the page).  At most
one chunk ahead of the slots in use is committed that way.
"""

from __future__ import annotations

import contextlib
import mmap
from typing import Final

CHUNK_BYTES: Final = 1 << 20
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
        "chunks",
        "hot",
        "_cold",
        "_next",
        "_releasable",
        "used",
    )

    def __init__(self, slot_size: int, hot_limit: int = 64, chunk_bytes: int = CHUNK_BYTES):
        if slot_size <= 0 or slot_size > chunk_bytes:
            raise ValueError(f"slot size {slot_size} does not fit a {chunk_bytes}-byte chunk")
        self.slot_size = slot_size
        self.per_chunk = chunk_bytes // slot_size
        self.hot_limit = hot_limit
        self.chunks: list[mmap.mmap] = []
        #: Freed slots, still resident, reused first (last freed first).  RamStore
        #: pops and appends here itself while no release is due (its hot path).
        self.hot: list[int] = []
        self._cold: list[int] = []  # freed and handed back to the kernel
        self._next = 0  # slots below this were handed out at least once
        self._releasable = _CAN_RELEASE and slot_size % _PAGESIZE == 0
        self.used = 0

    def alloc(self) -> int:
        """Return a free slot number (its old contents are unspecified)."""
        self.used += 1
        if self.hot:
            return self.hot.pop()
        if self._cold:
            return self._cold.pop()
        slot = self._next
        self._next = slot + 1
        if slot >= len(self.chunks) * self.per_chunk:
            self.chunks.append(anonymous_map(self.per_chunk * self.slot_size, bool(self.chunks)))
        return slot

    def free(self, slot: int) -> None:
        """Give a slot back; its bytes may be released to the kernel.

        The last slot given back unmaps every chunk and forgets the free lists.
        """
        self.used = used = self.used - 1
        if not used:
            self._empty()
            return
        hot = self.hot
        hot.append(slot)
        n = len(hot)
        if n > self.hot_limit and n > used >> 2 and self._releasable:
            self._release((n + 1) // 2)

    def _empty(self) -> None:
        """Nothing is in use: unmap every chunk, start afresh."""
        for chunk in self.chunks:
            with contextlib.suppress(BufferError):  # a view still open keeps its chunk
                chunk.close()
        self.chunks = []
        self.hot = []
        self._cold = []
        self._next = 0

    def _release(self, count: int) -> None:
        """Hand the ``count`` longest-free slots back to the kernel, runs of neighbours at once."""
        victims = sorted(self.hot[:count])
        del self.hot[:count]
        per, size = self.per_chunk, self.slot_size
        first = last = victims[0]
        for slot in victims[1:] + [-1]:
            if slot == last + 1 and slot // per == first // per:
                last = slot
                continue
            chunk = first // per
            pos = first - chunk * per
            self.chunks[chunk].madvise(mmap.MADV_DONTNEED, pos * size, (last - first + 1) * size)
            first = last = slot
        self._cold.extend(victims)

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

"""Size classes packed into large memory maps, in the spirit of zsmalloc.

An object (a compressed page) goes into the smallest size class that holds
it.  Class sizes step by 16 bytes up to 4 KiB, then by 64 and by 256 bytes up
to 64 KiB, so rounding wastes a few bytes per object, never a fraction of a
page.  Each class packs its slots back to back in 1 MiB anonymous maps; a slot
costs no Python object and memory is committed only where slots are written.

Objects are addressed by a *location* ``slot << CLASS_BITS | class``.  The
pool's caller keeps locations in an array indexed by its own handles and tells
the pool each object's handle, so compaction can move objects and rewrite
their locations in that array while the caller's handles never change (the
handle table of zsmalloc).

Freed slots become holes that the next object of the class fills (lowest
first).  When a class's holes exceed ``compact_fraction`` of its slots (and one
OS page), compaction moves the class's last objects into its lowest holes, a
bounded batch per call, and gives the memory past the last object back to the
kernel (``MADV_DONTNEED``, and whole maps unmapped).

Compaction is deferred while the class is still shrinking: an object moved in
the middle of a burst of frees (an object flush, a client leaving, eviction)
is often freed a moment later, so the move was wasted.  A class waits until
:data:`DEFER_OPS` store operations pass with no free in it; only a class whose
holes pass half its slots (:data:`HARD_FRACTION`) is compacted at once, and
then down to :data:`HARD_TARGET` (a batch of moves and one release per
crossing, not a move and an ``madvise`` for every free past the bound).  Due
classes are taken emptiest first, at most :data:`COMPACT_BATCH` moves per
call.  Holes at the top cost no move: they are trimmed as soon as they
appear, so a store emptied completely returns its memory without moving
anything.

Memory past a class's top is *held* until the pool gives it back: a trim or
a compaction lowers the top a few slots at a time while a store shrinks, and
one batch of ranges (:mod:`tmem.store.release`) costs far less than a system
call for each step.  Everything held goes back at once when it passes
:data:`HOLD_MIN` bytes and an eighth of the slots in use, when the pool is
empty, and after :meth:`ZsPool.compact`: memory held past the tops never
exceeds the larger of the two.  Owner arrays are ``librt.vecs.vec`` and a
class is found in a list by its number, so compiled code reads them without
boxing an integer.
"""

from __future__ import annotations

import heapq
import mmap
import time
from typing import Final

from librt.vecs import append, vec
from mypy_extensions import i16, i32

from tmem.store.arena import anonymous_map
from tmem.store.handles import HandleTable
from tmem.store.release import RELEASER

CLASS_BITS: Final = 10
CLASS_MASK: Final = (1 << CLASS_BITS) - 1
CHUNK_BYTES: Final = 1 << 20
OS_PAGE: Final = mmap.PAGESIZE
#: Objects moved per compaction step: bounds the work of any one call.
COMPACT_BATCH: Final = 64
#: Store operations (allocations and frees) without a free in a class before it is compacted.
DEFER_OPS: Final = 1024
#: Deferred classes are looked at once per this many store operations (a power of two).
CHECK_EVERY: Final = 32
#: Holes beyond this fraction of a class's slots are compacted at once, deferred or not.
HARD_FRACTION: Final = 0.5
#: ... and then down to this fraction (at most :data:`COMPACT_BATCH` moves a call).
HARD_TARGET: Final = 0.375
_CAN_RELEASE: Final = hasattr(mmap, "MADV_DONTNEED")
_cpu_ns = time.thread_time_ns
#: Bytes of the owner entry each slot has (handles are below 2**31).
OWNER_BYTES: Final = 4
#: Bytes freed off the classes' tops that may wait for one batched release (see
#: :meth:`ZsPool._hold`): up to this, or an eighth of the slots in use if more.
HOLD_MIN: Final = 256 << 10


def _round_up(n: int) -> int:
    return -(-n // OS_PAGE) * OS_PAGE


def class_size(size: int) -> int:
    """The slot size that holds an object of ``size`` bytes (1..65536)."""
    if size <= 4096:
        return (size + 15) & ~15
    if size <= 16384:
        return (size + 63) & ~63
    return (size + 255) & ~255


def class_index(slot_size: int) -> int:
    """A dense number for each slot size (below ``1 << CLASS_BITS``)."""
    if slot_size <= 4096:
        return slot_size >> 4
    if slot_size <= 16384:
        return 256 + ((slot_size - 4096) >> 6)
    return 448 + ((slot_size - 16384) >> 8)


_INDEX_SIZE: dict[int, int] = {}
for _size in range(16, 65537, 16):
    _INDEX_SIZE.setdefault(class_index(class_size(_size)), class_size(_size))
#: class index -> slot size (0 where the index is unused)
SLOT_SIZE: Final = vec[i32]([_INDEX_SIZE.get(i, 0) for i in range(1 << CLASS_BITS)])
#: object size -> class index, for sizes 0..65536 (one lookup on the hot path)
CLASS_OF: Final = vec[i16]([class_index(class_size(max(s, 1))) for s in range(65537)])


class SizeClass:
    """Slots of one size; ``owner[slot]`` is the handle stored there, or -1."""

    __slots__ = (
        "index", "slot_size", "per_chunk", "chunks", "owner", "top", "resident", "live", "holes",
    )  # fmt: skip

    def __init__(self, index: int) -> None:
        self.index = index
        self.slot_size: int = SLOT_SIZE[index]
        self.per_chunk = CHUNK_BYTES // self.slot_size
        self.chunks: list[mmap.mmap] = []
        self.owner: vec[i32] = vec[i32]()  # slots below ``top``: handle or -1 (a hole)
        self.top = 0  # slots at or past this were never used, or are free
        #: Slots below this may still be resident (at least ``top``): the memory of
        #: slots from ``top`` up to here waits for the pool's next release.
        self.resident = 0
        self.live = 0
        self.holes: list[int] = []  # heap of free slots; stale entries are skipped

    def alloc(self, handle: int) -> int:
        """A free slot for ``handle``: the lowest hole, else a new slot at the top."""
        owner, holes = self.owner, self.holes
        while holes:
            slot = heapq.heappop(holes)
            if slot < self.top and owner[slot] < 0:
                owner[slot] = handle
                self.live += 1
                return slot
        slot = self.top
        if slot // self.per_chunk >= len(self.chunks):
            self.chunks.append(anonymous_map(self.per_chunk * self.slot_size))
        if slot == len(owner):
            self.owner = append(owner, handle)
        else:
            owner[slot] = handle
        self.top = slot + 1
        if slot >= self.resident:
            self.resident = slot + 1
        self.live += 1
        return slot

    def free(self, slot: int) -> int:
        """Make ``slot`` a hole; trailing holes are trimmed off the top at once.

        Returns the slots the top came down by (their memory is the pool's to release).
        """
        self.owner[slot] = -1
        self.live -= 1
        if slot == self.top - 1:
            return self._trim()
        heapq.heappush(self.holes, slot)
        return 0

    def hole_count(self) -> int:
        """Free slots below the top (memory held but holding nothing)."""
        return self.top - self.live

    def _trim(self) -> int:
        """Lower the top past trailing holes; return by how many slots."""
        owner, old = self.owner, self.top
        top = old
        while top and owner[top - 1] < 0:
            top -= 1
        self.top = top
        if len(owner) > 2 * top + 1024:  # the owner array shrinks with the class
            self.owner = owner[:top]
        if len(self.holes) > 2 * (top - self.live) + 64:
            self.holes = [s for s in self.holes if s < top and owner[s] < 0]
            heapq.heapify(self.holes)
        return old - top

    def release_ranges(self, maps: list[mmap.mmap], ranges: list[int]) -> None:
        """Unmap the maps past the top and name the OS pages of slots ``top..resident``
        in the top map as a ``(map, offset, length)`` range (appended to ``maps``
        and ``ranges``, for :mod:`tmem.store.release`); the class is then resident
        only up to its top."""
        top, old = self.top, self.resident
        self.resident = top
        keep = max(-(-top // self.per_chunk), 1)  # the first map stays, for reuse
        while len(self.chunks) > keep:
            self.chunks.pop().close()
        if not _CAN_RELEASE or old <= top or not self.chunks:
            return
        chunk, base = self.chunks[keep - 1], (keep - 1) * self.per_chunk
        start = _round_up((top - base) * self.slot_size)
        end = min(_round_up((min(old, base + self.per_chunk) - base) * self.slot_size), len(chunk))
        if end > start:
            ranges += (len(maps), start, end - start)
            maps.append(chunk)

    def resident_bytes(self) -> int:
        """Bytes of the maps that slots below ``resident`` have touched (an RSS bound)."""
        full, pos = divmod(max(self.top, self.resident), self.per_chunk)
        return full * _round_up(self.per_chunk * self.slot_size) + _round_up(pos * self.slot_size)


class ZsPool:
    """Objects of 1..65536 bytes in size classes; locations live in ``loc[handle]``."""

    def __init__(self, table: HandleTable, compact_fraction: float = 1 / 16) -> None:
        if not 0 <= compact_fraction <= 1:
            raise ValueError(f"compact_fraction {compact_fraction!r} is not in [0, 1]")
        self.table = table  # its ``loc`` row is read afresh each time: a grown vec is a new one
        self.compact_fraction = compact_fraction
        self.classes: dict[int, SizeClass] = {}  # class index -> class, made on first use
        #: the same classes in a list by class index (None where unused): the hot paths'
        #: lookup, with no boxed key
        self.by_index: list[SizeClass | None] = [None] * (1 << CLASS_BITS)
        #: bytes of slots freed off the classes' tops and not yet given back (see
        #: :meth:`_hold`)
        self.held = 0
        self.releases = 0  # releases of held memory
        #: classes whose holes passed the threshold -> the operation count of their last free
        self.pending: dict[int, int] = {}
        self.ops = 0  # allocations and frees so far
        self.used_bytes = 0  # slots in use, with their rounding
        self.compactions = 0
        self.objects_moved = 0
        self.bytes_compacted = 0
        #: Whether compaction times itself into ``compaction_ns`` (CPU time of the
        #: thread, in ns): off by default, as the clock is a system call (µs here).
        self.time_compaction = False
        self.compaction_ns = 0

    def store(self, data: bytes | memoryview, handle: int) -> int:
        """Copy ``data`` into a new object owned by ``handle``; return its location."""
        index: int = CLASS_OF[len(data)]
        cls = self.by_index[index]
        if cls is None:
            cls = self.by_index[index] = self.classes[index] = SizeClass(index)
        self.used_bytes += cls.slot_size
        ops = self.ops = self.ops + 1
        if self.pending and not ops & (CHECK_EVERY - 1):
            self.compact_due()
        held = cls.resident - cls.top
        slot = cls.alloc(handle)
        if held:  # a slot above the top, still resident, is in use again
            self.held -= (held - (cls.resident - cls.top)) * cls.slot_size
        per = cls.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) * cls.slot_size
        cls.chunks[chunk][start : start + len(data)] = data
        return slot << CLASS_BITS | index

    def _class(self, loc: int) -> SizeClass:
        cls = self.by_index[loc & CLASS_MASK]
        assert cls is not None, "a location of a class never used"
        return cls

    def write(self, loc: int, data: bytes | memoryview) -> None:
        """Copy ``data`` to the start of the object at ``loc``."""
        cls = self._class(loc)
        slot, per = loc >> CLASS_BITS, cls.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) * cls.slot_size
        cls.chunks[chunk][start : start + len(data)] = data

    def read(self, loc: int, length: int) -> bytes:
        """A copy of the first ``length`` bytes of the object at ``loc``."""
        cls = self._class(loc)
        slot, per = loc >> CLASS_BITS, cls.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) * cls.slot_size
        return cls.chunks[chunk][start : start + length]

    def free(self, loc: int) -> None:
        """Release the object at ``loc``; defer compaction of its class (see the module)."""
        index = loc & CLASS_MASK
        cls = self._class(loc)
        size = cls.slot_size
        self.used_bytes -= size
        # slots trimmed off the top join the held memory; held memory is also checked
        # against a bound that falls as slots are freed
        self._hold(cls.free(loc >> CLASS_BITS) * size)
        ops = self.ops = self.ops + 1
        holes = cls.top - cls.live
        if holes * size > OS_PAGE and holes > self.compact_fraction * cls.top:
            self.pending[index] = ops
            if holes > HARD_FRACTION * cls.top:
                self._compact_class(cls, COMPACT_BATCH, int(HARD_TARGET * cls.top))
        if self.pending and not ops & (CHECK_EVERY - 1):
            self.compact_due()

    def _hold(self, freed: int) -> None:
        """Count ``freed`` bytes of slots freed off a class's top as held, and give
        back all that is held once it passes :data:`HOLD_MIN` bytes and an eighth
        of the slots in use, or once the pool is empty (see the module)."""
        self.held = held = self.held + freed
        if held and (held > HOLD_MIN and held > self.used_bytes >> 3 or not self.used_bytes):
            self.release_held()

    def release_held(self) -> int:
        """Give back the memory of every class past its top now; the system calls made."""
        maps: list[mmap.mmap] = []
        ranges: list[int] = []
        for cls in self.classes.values():
            if cls.resident > cls.top or len(cls.chunks) > max(-(-cls.top // cls.per_chunk), 1):
                cls.release_ranges(maps, ranges)
        self.held = 0
        self.releases += 1
        return RELEASER.release(maps, ranges)

    def compact_due(self, budget: int = COMPACT_BATCH) -> int:
        """Compact classes with no free for :data:`DEFER_OPS` operations, emptiest first.

        At most ``budget`` objects move; return how many did.
        """
        ops = self.ops
        due = [i for i, last in self.pending.items() if ops - last >= DEFER_OPS]
        if not due:
            return 0
        return self.compact_step(budget, due)

    def compact_step(self, budget: int = COMPACT_BATCH, indexes: list[int] | None = None) -> int:
        """Move up to ``budget`` objects of pending classes (or of ``indexes``) into holes,
        the emptiest class first; return the moves made."""
        classes = self.classes
        order = list(self.pending) if indexes is None else indexes
        order.sort(key=lambda i: classes[i].live / classes[i].top if classes[i].top else 0)
        moved = 0
        for index in order:
            if moved >= budget:
                break
            cls = classes[index]
            moved += self._compact_class(cls, budget - moved)
            if cls.top == cls.live:
                self.pending.pop(index, None)
                self.compactions += 1
        return moved

    def compact(self) -> int:
        """Compact every class completely (unbounded work); return objects moved."""
        for i, c in self.classes.items():
            if c.top > c.live:
                self.pending[i] = self.ops
        moved = 0
        while self.pending:
            moved += self.compact_step()
        self.release_held()
        return moved

    def _compact_class(self, cls: SizeClass, budget: int, holes_left: int = 0) -> int:
        """Move the class's last objects into its lowest holes, at most ``budget``,
        until at most ``holes_left`` holes remain."""
        start = _cpu_ns() if self.time_compaction else 0
        owner, holes, loc, size = cls.owner, cls.holes, self.table.loc, cls.slot_size
        chunks, per = cls.chunks, cls.per_chunk
        old_top, moved = cls.top, 0
        while moved < budget and cls.top - cls.live > holes_left:
            hole = heapq.heappop(holes)
            if hole >= cls.top or owner[hole] >= 0:
                continue  # stale entry
            last = cls.top - 1  # live: trailing holes are always trimmed
            handle: int = owner[last]
            src_chunk, dst_chunk = last // per, hole // per
            src = (last - src_chunk * per) * size
            dst = (hole - dst_chunk * per) * size
            if src_chunk == dst_chunk:
                chunks[dst_chunk].move(dst, src, size)  # one memmove, no bytes object
            else:
                chunks[dst_chunk][dst : dst + size] = chunks[src_chunk][src : src + size]
            owner[hole] = handle
            loc[handle] = hole << CLASS_BITS | cls.index
            owner[last] = -1
            top = last
            while top and owner[top - 1] < 0:
                top -= 1
            cls.top = top
            moved += 1
        self.objects_moved += moved
        self.bytes_compacted += (old_top - cls.top) * size
        if old_top > cls.top:
            self._hold((old_top - cls.top) * size)
        if self.time_compaction:
            self.compaction_ns += _cpu_ns() - start
        return moved

    def stats(self) -> dict[str, int]:
        """Bytes in use, held (resident bound), in holes, mapped; compaction counters."""
        classes = list(self.classes.values())
        return {
            "slot_bytes": self.used_bytes,
            "arena_resident_bytes": sum(c.resident_bytes() for c in classes),
            "hole_bytes": sum(c.hole_count() * c.slot_size for c in classes),
            "mapped_bytes": sum(len(c.chunks) * CHUNK_BYTES for c in classes),
            "size_classes": len(classes),
            "compactions": self.compactions,
            "compaction_deferred": len(self.pending),
            "objects_moved": self.objects_moved,
            "pages_compacted": self.bytes_compacted // OS_PAGE,
            "compaction_ns": self.compaction_ns,
            "held_bytes": self.held,
            "held_releases": self.releases,
        }

"""The SSD tier: pages appended to a log file, an index in RAM, compaction for space.

Like memcached's extstore and zram's writeback device:

* The file is ``size`` bytes cut into equal **segments**.  One segment is open
  at a time; its image is kept in a page-aligned buffer and each batch of
  demoted pages is written with one large ``pwrite`` of whole 4 KiB blocks.
* Every record is a 32-byte header (version, key, slot, length, checksum,
  flags) and the exported page.  No record spans more 4 KiB blocks than its
  length needs (one of up to a block never straddles two; a batch is packed
  largest first into the blocks it opens, first fit), so a load is one
  aligned read of the fewest blocks (one for most pages) into a preallocated
  aligned buffer.  It checks the header and checksum against what the index
  expects, so a stale or torn record is never returned.  Loads read outside
  the tier's lock, each into a buffer of its own: they run side by side.
* Writes (a demotion's batch, compaction's rewrite) and compaction's read of
  a segment run outside the tier's lock too, one writer at a time: a record
  enters the index only once its write is done, and a record compaction
  moves keeps its old place in the index until the copy is on disk (then it
  moves, unless it was freed meanwhile).  So loads of other records go on
  during a write, and none reads a record that is not yet on disk.
* The index in RAM is one row per page (offset, length, version, flags:
  :data:`INDEX_BYTES_PER_PAGE` bytes), counted in the host's metadata.
* When the last free segment but one is taken, the sealed segment with the
  fewest persistent bytes (the oldest among equals) is **compacted**: its
  live persistent records are rewritten into the new open segment, its
  ephemeral ones are dropped (and reported through :meth:`SsdTier.dropped`),
  and it becomes free.  If no
  segment would give back at least an eighth of its size, the tier is full
  and refuses pages until frees make room.
* The file is opened with ``O_DIRECT`` where the file system allows it;
  elsewhere (tmpfs) each write is synced and each range read or written is
  dropped from the page cache with ``posix_fadvise(DONTNEED)``.  Either way
  the kernel does not keep a second copy of the pages.
* Bytes written are counted (SSD wear).  A write error takes the tier out of
  service: the batch is refused (those pages stay in RAM), pages already in
  the file stay readable, and no new page comes down until the host is
  restarted.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
from array import array
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import xxhash

from tmem.errors import InvalidArgument, TierError
from tmem.tier import fastload
from tmem.tier.base import Demotion

#: Records: version, key, slot, length, checksum of the payload, flags; 32 bytes.
HEADER = struct.Struct("<QQIIIB3x")
BLOCK = 4096
#: Index row per page: offset (8), length (4), version (8), flags (1).
INDEX_BYTES_PER_PAGE = 21
_PERSISTENT = 1
#: Blocks a load reads at most through a view made in advance (a 64 KiB page and its header).
_MAX_BLOCKS = 17
#: Reads of a record that compaction keeps moving, at most, before a load gives up.
_LOAD_ATTEMPTS = 3
#: Blocks with room left that placement looks at (bounded work per record).
_MAX_BINS = 32
_FREE, _OPEN, _SEALED = 0, 1, 2
_NIL = -1
#: The payload's checksum in a record: the low 32 bits of XXH3 (several times XXH32's speed).
_checksum = xxhash.xxh3_64_intdigest
_CHECK_MASK = 0xFFFFFFFF
#: The header's fields a load checks (version, slot, length, checksum), read in one go.
_unpack_checked = struct.Struct("<Q8xIII4x").unpack_from
_HEADER_SIZE = HEADER.size


def _round_up(n: int, to: int = BLOCK) -> int:
    return (n + to - 1) // to * to


def default_segment_size(size: int) -> int:
    """An eighth of the file, between 128 KiB and 4 MiB, in whole blocks."""
    return max(128 << 10, min(4 << 20, size // 8 // BLOCK * BLOCK))


class _NoRoom(Exception):
    """Compaction's records do not fit in one segment once placed in blocks."""


class _Reader:
    """A page-aligned buffer for one load at a time (``O_DIRECT`` reads need the
    alignment), and views of its first k blocks, made once."""

    __slots__ = ("buf", "views")

    def __init__(self) -> None:
        self.buf = mmap.mmap(-1, _MAX_BLOCKS * BLOCK)
        self.views = [memoryview(self.buf)[: k * BLOCK] for k in range(_MAX_BLOCKS + 1)]

    def close(self) -> None:
        for view in self.views:
            view.release()
        self.buf.close()


class SsdTier:
    """A log-structured page file of ``size`` bytes at ``path`` (a file, or a directory)."""

    name = "ssd"
    index_bytes_per_page = INDEX_BYTES_PER_PAGE

    def __init__(
        self, path: str, size: int, segment_size: int | None = None, direct: bool = True
    ) -> None:
        if type(size) is not int or size <= 0:
            raise InvalidArgument(f"SSD tier size {size!r} must be a positive byte count")
        seg = default_segment_size(size) if segment_size is None else segment_size
        if type(seg) is not int or seg < 128 << 10 or seg % BLOCK:
            raise InvalidArgument(f"segment size {seg!r} must be whole 4 KiB blocks, >= 128 KiB")
        if size < 4 * seg:
            raise InvalidArgument(f"an SSD tier needs at least 4 segments ({4 * seg} bytes)")
        if os.path.isdir(path):
            path = os.path.join(path, f"tmem-tier-{os.getpid()}.log")
        self.path = path
        self.size = size
        self.seg = seg
        self.nseg = size // seg
        self.direct = False
        self.fd = self._open(path, direct)
        try:
            if stat.S_ISREG(os.fstat(self.fd).st_mode):  # a device has its own size
                os.ftruncate(self.fd, self.nseg * seg)  # sparse: blocks are taken as written
        except OSError as exc:
            os.close(self.fd)
            raise InvalidArgument(f"cannot size SSD tier file {path!r}: {exc}") from None
        self.lock = threading.Lock()  # the index and the segments' live bytes
        #: One writer at a time (store, compaction, close): held across the writes, which
        #: let go of ``lock`` while they reach the disk.
        self._writing = threading.Lock()
        #: Records written out by the next write, entered in the index once it is done:
        #: ``(slot, version, old offset or -1 for a new record, new offset)``.
        self._unpublished: list[tuple[int, int, int, int]] = []
        # The index: one row per slot; free slots are chained through ``off``.
        self.off = array("q")
        self.length = array("I")
        self.tag = array("q")
        self.flags = array("B")
        self._free_slot = _NIL
        # Segments: state, live bytes, and persistent live bytes.
        self.state = array("B", bytes(self.nseg))
        self.live = array("q", bytes(8 * self.nseg))
        self.keep = array("q", bytes(8 * self.nseg))
        self.end = array("q", bytes(8 * self.nseg))  # where each segment's records stop
        self.sealed_at = array("q", bytes(8 * self.nseg))  # order of sealing: oldest first
        self._seals = 0
        self.free_segs = list(range(self.nseg - 1, -1, -1))
        self.open: int | None = None
        self.cursor = 0  # next record's place in the open segment
        self.flushed = 0  # the open segment is on disk up to here
        self.buf = mmap.mmap(-1, seg)  # the open segment's image, page-aligned
        self.rbuf = mmap.mmap(-1, seg)  # compaction's reads, page-aligned
        #: Read buffers of loads not running now: one is taken per load, and given back.
        self._readers: list[_Reader] = [_Reader()]
        #: The compiled read and checks (:mod:`tmem.tier.fastload`), or None: the same in Python.
        self.read_record = fastload.read_record
        #: Loads and bytes read by the compiled load, which counts here holding only the
        #: interpreter: nothing else writes these two (the loads and reads in Python count
        #: in ``counters``, under the lock), so neither kind can lose the other's update.
        self._counts = array("q", [0, 0])
        #: The whole load in one compiled call, bound to this file and index:
        #: ``quick_load(slot, version)`` answers as :meth:`load` does, or False where a
        #: check failed (then :meth:`load` goes the careful way).  None where the C module
        #: was not built, and once the file is no longer ``O_DIRECT``.  A host calls it
        #: directly, so that no Python runs around the read on a get.
        self.quick_load: Callable[[int, int], bytes | bool | None] | None = None
        if fastload.load_record is not None and self.direct:  # its buffers: the module's own
            self.quick_load = partial(
                fastload.load_record, self.fd, None, self.off, self.length, self.tag, self._counts
            )
        # Blocks of the unwritten part of the open segment with room left: [place, room].
        self._bins: list[list[int]] = []
        self.failed: str | None = None
        self._dropped: list[tuple[int, int]] = []
        self.pages = 0
        self.bytes = 0  # payload bytes held
        self.counters = dict.fromkeys(
            ("stored", "refused", "load_failures", "bytes_written", "writes", "compactions",
             "relocated", "dropped", "write_errors", "loads", "bytes_read"), 0)  # fmt: skip

    # --- the file ----------------------------------------------------------

    def _open(self, path: str, direct: bool) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        if direct and hasattr(os, "O_DIRECT"):
            try:
                fd = os.open(path, flags | os.O_DIRECT, 0o600)
                self.direct = True
                return fd
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise InvalidArgument(f"cannot open SSD tier file {path!r}: {exc}") from None
        try:
            return os.open(path, flags, 0o600)
        except OSError as exc:
            raise InvalidArgument(f"cannot open SSD tier file {path!r}: {exc}") from None

    def _write(self, data: memoryview, offset: int) -> None:
        """Write whole blocks at ``offset`` (the tier's lock is let go meanwhile); raise
        OSError on any failure."""
        self.lock.release()
        try:
            self._write_unlocked(data, offset)
        finally:
            self.lock.acquire()
        self.counters["bytes_written"] += len(data)
        self.counters["writes"] += 1

    def _write_unlocked(self, data: memoryview, offset: int) -> None:
        try:
            done = os.pwrite(self.fd, data, offset)
        except OSError as exc:
            if not (self.direct and exc.errno == errno.EINVAL):
                raise
            # The file system refused O_DIRECT at write time: carry on through the page cache.
            self._reopen_buffered()
            done = os.pwrite(self.fd, data, offset)
        if done != len(data):
            raise OSError(errno.EIO, f"short write ({done} of {len(data)} bytes)")
        if not self.direct:
            os.fdatasync(self.fd)
            os.posix_fadvise(self.fd, offset, len(data), os.POSIX_FADV_DONTNEED)

    def _reopen_buffered(self) -> None:
        """Carry on through the page cache: ``O_DIRECT`` cleared on the open file itself.

        The descriptor stays the same, so a load outside the lock that took
        ``self.fd`` before the switch reads the same file after it (a new
        descriptor put in its place would close one such a load may be about to
        read, or whose number the kernel may already have handed out again).
        """
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        self.direct = False
        self.quick_load = None  # reads now go through the page cache: drop them after

    def _read(self, offset: int, n: int) -> memoryview:
        """Read ``n`` bytes at ``offset`` (whole blocks around them) into ``rbuf``."""
        start = offset // BLOCK * BLOCK
        end = _round_up(offset + n)
        view = memoryview(self.rbuf)[: end - start]
        self.lock.release()  # a sealed segment: only this writer may change it
        try:
            got = os.preadv(self.fd, [view], start)
            if not self.direct:
                os.posix_fadvise(self.fd, start, end - start, os.POSIX_FADV_DONTNEED)
        finally:
            self.lock.acquire()
        if got < offset + n - start:
            raise OSError(errno.EIO, f"short read ({got} of {end - start} bytes)")
        self.counters["bytes_read"] += got
        return memoryview(self.rbuf)[offset - start : offset - start + n]

    # --- slots -------------------------------------------------------------

    def _alloc_slot(self) -> int:
        slot = self._free_slot
        if slot == _NIL:
            slot = len(self.off)
            self.off.append(0)
            self.length.append(0)
            self.tag.append(0)
            self.flags.append(0)
        else:
            self._free_slot = self.off[slot]
        return slot

    def _release_slot(self, slot: int) -> None:
        seg = self.off[slot] // self.seg
        n = self.length[slot]
        self.live[seg] -= n
        if self.flags[slot] & _PERSISTENT:
            self.keep[seg] -= n
        self.pages -= 1
        self.bytes -= n - HEADER.size
        self.tag[slot] = 0
        self.off[slot] = self._free_slot
        self._free_slot = slot

    def _holds(self, slot: int, tag: int) -> bool:
        return 0 <= slot < len(self.tag) and tag > 0 and self.tag[slot] == tag

    # --- the tier interface ----------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False once a write failed: the tier takes no more pages."""
        return self.failed is None

    def store(self, batch: Sequence[Demotion]) -> list[int | None]:
        """Append the batch to the open segment and write it out; a location per page."""
        with self._writing, self.lock:
            if self.failed is not None:
                self.counters["refused"] += len(batch)
                return [None] * len(batch)
            out: list[int | None] = [None] * len(batch)
            new: list[int] = []
            # Largest first: small records then fill the room the large ones leave in blocks.
            order = sorted(range(len(batch)), key=lambda i: -len(batch[i].payload))
            try:
                for i in order:
                    slot = self._append(batch[i])
                    out[i] = slot
                    if slot is not None:
                        new.append(slot)
                self._flush()
            except OSError as exc:
                self._fail(exc)
                self._unpublished.clear()
                for slot in new:  # those written already too: the host never learns of them
                    self._release_slot(slot)
                self.counters["refused"] += len(batch)
                return [None] * len(batch)
            self.counters["stored"] += len(new)
            self.counters["refused"] += len(batch) - len(new)
            return out

    def _append(self, item: Demotion) -> int | None:
        n = HEADER.size + len(item.payload)
        if n > self.seg:
            return None
        for _ in range(self.nseg):
            pos = None if self.open is None else self._place(n)
            if pos is not None:
                break
            if not self._next_segment():
                return None
        else:
            return None
        slot = self._alloc_slot()
        self._put_record(slot, pos, item.tag, item.key, item.payload, item.persistent)
        self.pages += 1
        self.bytes += len(item.payload)
        return slot

    def _place(self, n: int) -> int | None:
        """Where a record of ``n`` bytes goes in the open segment; None if it does not fit.

        No record spans more blocks than its length needs: one of up to a block
        never straddles two, so a load reads the fewest blocks.  A record that
        fits in a block goes into the first block of this write with room for
        it (first fit), else after the last record; a longer one goes after the
        last record if it still spans the fewest blocks there, else at a block.
        """
        cursor = self.cursor
        off = cursor % BLOCK
        room = BLOCK - off if off else 0  # left in the last block, after the last record
        if n <= BLOCK:
            if n <= room:
                self.cursor = cursor + n
                return cursor
            for hole in self._bins:
                if hole[1] >= n:
                    pos = hole[0]
                    hole[0] += n
                    hole[1] -= n
                    if hole[1] <= HEADER.size:
                        self._bins.remove(hole)
                    return pos
        start = cursor
        if room and (room < HEADER.size or n <= BLOCK or (off + n - 1) // BLOCK > (n - 1) // BLOCK):
            start = cursor + room  # at the next block: the rest of this one stays a hole
            if room > HEADER.size:
                if len(self._bins) >= _MAX_BINS:
                    del self._bins[0]
                self._bins.append([cursor, room])
        end = start + n
        if end > self.seg:
            return None
        opened, stop = _round_up(cursor), _round_up(end)
        if stop > opened:  # a scan meets zeros after the last record of a block
            self.buf[opened:stop] = bytes(stop - opened)
        self.cursor = end
        return start

    def _put_record(
        self, slot: int, pos: int, tag: int, key: int, payload: Any, persistent: bool, old: int = -1
    ) -> None:
        """Copy a record into the open segment's image at ``pos``; it enters the index
        (at ``pos``, or moved there from ``old``) once the next write is done."""
        n = HEADER.size + len(payload)
        flags = _PERSISTENT if persistent else 0
        assert self.open is not None
        check = _checksum(payload) & _CHECK_MASK
        HEADER.pack_into(self.buf, pos, tag, key, slot, len(payload), check, flags)
        self.buf[pos + HEADER.size : pos + n] = payload
        where = self.open * self.seg + pos
        if old < 0:  # a new record: indexed, but not held (version 0) until it is written
            self.off[slot] = where
            self.length[slot] = n
            self.tag[slot] = 0
            self.flags[slot] = flags
        self._unpublished.append((slot, tag, old, where))
        self.live[self.open] += n
        if persistent:
            self.keep[self.open] += n

    def _publish(self) -> None:
        """The records of the write just done enter the index; a moved one that was
        freed meanwhile is not brought back (its new copy is dead space)."""
        for slot, tag, old, where in self._unpublished:
            if old < 0:
                self.tag[slot] = tag
                continue
            n = self.length[slot]
            if self._holds(slot, tag) and self.off[slot] == old:
                self.off[slot] = where
                self.live[old // self.seg] -= n
                self.keep[old // self.seg] -= n
            else:
                self.live[where // self.seg] -= n
                self.keep[where // self.seg] -= n
        self._unpublished.clear()

    def _flush(self) -> None:
        """Write the open segment's image from the last write to the cursor, in blocks."""
        if self.open is None or self.cursor == self.flushed:
            return
        end = _round_up(self.cursor)  # the blocks were zeroed as they were opened
        self._write(memoryview(self.buf)[self.flushed : end], self.open * self.seg + self.flushed)
        self.flushed = self.cursor = end
        self._bins.clear()
        self._publish()

    def _next_segment(self) -> bool:
        """Seal the open segment and open another, compacting when one free is left."""
        self._flush()
        if self.open is not None:
            self.state[self.open] = _SEALED
            self.end[self.open] = self.flushed
            self._seals += 1
            self.sealed_at[self.open] = self._seals
            self.open = None
        if len(self.free_segs) > 1:
            self._open_segment(self.free_segs.pop())
            return True
        return self._compact()

    def _open_segment(self, seg: int) -> None:
        self.state[seg] = _OPEN
        self.open = seg
        self.cursor = self.flushed = 0
        self._bins.clear()

    def _compact(self) -> bool:
        """Rewrite the best sealed segment's persistent records into the last free one."""
        if not self.free_segs:
            return False
        sealed = [s for s in range(self.nseg) if self.state[s] == _SEALED]
        if not sealed:
            return False
        # The fewest persistent bytes to rewrite; among equals the oldest (its pages are coldest).
        victim = min(sealed, key=lambda s: (self.keep[s], self.sealed_at[s]))
        if self.keep[victim] > self.seg - self.seg // 8:
            return False  # nothing would give back enough: the tier is full
        image = bytes(self._read(victim * self.seg, self.end[victim]))
        keep, dropped = self._scan(victim, image)  # under the lock again: what is live now
        versions = [self.tag[slot] for slot, _ in dropped]
        self._open_segment(self.free_segs.pop())
        moved: list[tuple[int, int]] = []  # (slot, length) of the records copied
        base = victim * self.seg
        try:
            for pos, n in sorted(keep, key=lambda rec: -rec[1]):  # largest first, as in store
                tag, key, slot, length, _, _ = HEADER.unpack_from(image, pos)
                new = self._place(n)
                if new is None:  # padding made the records longer than a segment
                    raise _NoRoom
                moved.append((slot, n))
                payload = image[pos + HEADER.size : pos + n]
                self._put_record(slot, new, tag, key, payload, True, old=base + pos)
            self._flush()  # the moved records take their new places once written
        except (OSError, _NoRoom) as exc:
            opened = self.open
            assert opened is not None  # the segment the records were moved into
            self._unpublished.clear()  # the old copies are still on disk: keep using them
            for _, n in moved:
                self.live[opened] -= n
                self.keep[opened] -= n
            if isinstance(exc, OSError):
                raise
            self._close_empty_open()
            return False
        for (slot, key), tag in zip(dropped, versions, strict=True):
            if self._holds(slot, tag):  # unless freed while the lock was let go
                self._dropped.append((key, tag))
                self._release_slot(slot)
        self.counters["compactions"] += 1
        self.counters["relocated"] += len(moved)
        self.counters["dropped"] += len(dropped)
        assert self.live[victim] == 0, "a compacted segment still holds live records"
        self.state[victim] = _FREE
        self.free_segs.insert(0, victim)
        return True

    def _scan(self, seg: int, image: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The live records of a segment's image: ``(place, length)`` of the persistent
        ones and ``(slot, key)`` of the ephemeral ones."""
        keep: list[tuple[int, int]] = []
        dropped: list[tuple[int, int]] = []
        base = seg * self.seg
        pos = 0
        while pos + HEADER.size <= len(image):
            room = BLOCK - pos % BLOCK
            if room < HEADER.size:  # too short for a record: the block ends in zeros
                pos += room
                continue
            tag, key, slot, length, _, flags = HEADER.unpack_from(image, pos)
            if tag == 0:  # zeros up to the next block
                pos += room
                continue
            n = HEADER.size + length
            if self._holds(slot, tag) and self.off[slot] == base + pos:
                if flags & _PERSISTENT:
                    keep.append((pos, n))
                else:
                    dropped.append((slot, key))
            pos += n
        return keep, dropped

    def _close_empty_open(self) -> None:
        """Give the open segment, which holds nothing, back to the free ones."""
        assert self.open is not None and self.live[self.open] == 0
        self.state[self.open] = _FREE
        self.free_segs.append(self.open)
        self.open = None
        self._bins.clear()

    def _fail(self, exc: OSError) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        self.counters["write_errors"] += 1
        if self.open is not None:  # what it holds is on disk, or released by the caller
            self.state[self.open] = _SEALED
            self.end[self.open] = self.flushed
            self.open = None

    def load(self, loc: int, tag: int) -> bytes | None:
        """The payload of version ``tag`` at slot ``loc``; None if not held; TierError if bad.

        The index is read, then one aligned read of the blocks that hold the
        record (one block for a record of up to 4 KiB), outside the lock, into
        a buffer of this load's own, and one copy out of it, which is checked.
        Where the C module was built and the file is ``O_DIRECT``, all of it is
        one call (:attr:`quick_load`, :func:`tmem.tier.fastload.load_record`)
        that reads the index holding only the interpreter: a row caught
        mid-change reads a record that fails its checks, and the load then goes
        the careful way (:meth:`_load_carefully`), as does a record compaction
        moved.  So little Python runs around the read, on caches that went cold
        while it blocked.
        """
        quick = self.quick_load
        if quick is not None:  # the lookup, read and checks in one call
            try:
                found = quick(loc, tag)
            except (OSError, ValueError) as exc:
                with self.lock:
                    self.counters["load_failures"] += 1
                raise TierError(f"SSD tier read of record {loc} failed: {exc}") from None
            if found is not False:
                return found  # type: ignore[return-value]
        return self._load_carefully(loc, tag)

    def _load_carefully(self, loc: int, tag: int) -> bytes | None:
        """:meth:`load` with the index read under the tier's lock.  A record that fails its
        checks is looked up again: one that compaction moved meanwhile is read at its new
        place, one no longer held is None, and only one still indexed where it was read
        is an error."""
        lock, counters = self.lock, self.counters
        for _ in range(_LOAD_ATTEMPTS):
            lock.acquire()
            try:
                if loc < 0 or tag <= 0 or loc >= len(self.tag) or self.tag[loc] != tag:
                    return None
                off = self.off[loc]
                end = off % BLOCK + self.length[loc]
                blocks = (end + BLOCK - 1) // BLOCK
                counters["loads"] += 1
                counters["bytes_read"] += blocks * BLOCK
            finally:
                lock.release()
            readers = self._readers
            reader = readers.pop() if readers else _Reader()
            start = off - off % BLOCK
            compiled = self.read_record
            try:
                if compiled is not None:  # the read and the checks in one call (see fastload)
                    payload = compiled(self.fd, reader.buf, start, blocks * BLOCK, off - start,
                                       end, tag, loc)  # fmt: skip
                else:
                    payload = self._read_checked(reader, start, blocks, off - start, end, tag, loc)
                if not self.direct:
                    os.posix_fadvise(self.fd, start, blocks * BLOCK, os.POSIX_FADV_DONTNEED)
            except (OSError, IndexError, ValueError) as exc:  # more blocks than a page takes
                with lock:
                    counters["load_failures"] += 1
                raise TierError(f"SSD tier read of record {loc} failed: {exc}") from None
            finally:
                readers.append(reader)
            if payload is not None:
                return payload
            with lock:
                if self._holds(loc, tag) and self.off[loc] == off:
                    counters["load_failures"] += 1
                    raise TierError(f"SSD tier record {loc} fails its checks")
        with lock:
            counters["load_failures"] += 1
        raise TierError(f"SSD tier record {loc} kept moving while it was read")

    def _read_checked(
        self, reader: _Reader, start: int, blocks: int, at: int, end: int, tag: int, slot: int
    ) -> bytes | None:
        """What :func:`tmem.tier.fastload.read_record` does, in Python: read the blocks,
        and the record's payload at ``at`` if its header and checksum hold, else None."""
        got = os.preadv(self.fd, [reader.views[blocks]], start)
        rtag, rslot, length, check = _unpack_checked(reader.buf, at)
        payload = reader.buf[at + _HEADER_SIZE : end]  # bytes, in one copy
        if (
            got >= end
            and rtag == tag
            and rslot == slot
            and length == end - at - _HEADER_SIZE
            and _checksum(payload) & _CHECK_MASK == check
        ):
            return payload
        return None

    def free(self, pages: Sequence[tuple[int, int]]) -> None:
        """Forget each ``(slot, version)`` still held; its bytes are reclaimed by compaction."""
        with self.lock:
            for slot, tag in pages:
                if self._holds(slot, tag):
                    self._release_slot(slot)

    def dropped(self) -> list[tuple[int, int]]:
        """``(key, version)`` of ephemeral pages compaction dropped since the last call."""
        with self.lock:
            out, self._dropped = self._dropped, []
            return out

    def stats(self) -> dict[str, Any]:
        """Pages and bytes held, the device's bytes written and read, compaction counters."""
        with self.lock:
            out: dict[str, Any] = {
                "tier": self.name,
                "path": self.path,
                "size": self.size,
                "segment_size": self.seg,
                "direct_io": self.direct,
                "healthy": self.failed is None,
                "failure": self.failed,
                "pages": self.pages,
                "bytes": self.bytes,
                "log_bytes": sum(self.live),
                "free_segments": len(self.free_segs),
                "index_bytes": len(self.off) * INDEX_BYTES_PER_PAGE,
            }
            out.update(self.counters)
            out["loads"] += self._counts[0]  # the compiled load's (see ``_counts``)
            out["bytes_read"] += self._counts[1]
            return out

    def close(self) -> None:
        """Close and remove the file (pages of a stopped host mean nothing)."""
        with self._writing, self.lock:
            self.quick_load = None
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
                if os.path.isfile(self.path):
                    os.unlink(self.path)
            for reader in self._readers:
                reader.close()
            self._readers = []
            self.buf.close()
            self.rbuf.close()

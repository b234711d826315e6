"""cleancache: a file page cache whose victims go to an ephemeral tmem pool.

Design
------
A :class:`CleanCache` holds a bounded private LRU cache of ``cache_pages``
pages in front of the file system.  A page read that misses it asks tmem, and
only then reads the disk with ``os.pread``.  When the private cache evicts a
page (every page in it is clean: writes go straight to the file with
``os.pwrite``), the page is put into the ephemeral tmem pool of the file's file
system, where a later miss may find it again.

* **Pools.** One pool per file system (``st_dev``), created by :meth:`enable`;
  files on file systems not enabled use the private cache only.  With a
  ``shared_uuid`` the pool is the host's shared pool of that uuid when the host
  has authorized this client, so that processes reading the same files share
  one copy; otherwise a private pool.
* **Handles.** A file's object id packs its inode, change time (ns) and size
  as the cache first saw them or last saw them changed behind its back (its
  *generation*), so processes that see the same unchanged file agree on the
  id, and a file changed while nobody watched gets a new one.  The index is
  the page number in the file.
* **Coherency.** Before any page of a file is served, the file's size, change
  and modification times are compared with what the cache last saw; if they
  differ the file's pages are flushed (privately and in tmem) and its
  generation moves on.  Writes through the cache update the private page or
  flush the tmem page; truncation flushes the pages past the new end;
  :meth:`unlink` and :meth:`rename` flush the object of the file that goes away
  or is replaced.  In a shared pool a write also moves the file to a new
  generation, since other processes may still hold the old pages.
* **Gets it can skip.** In a private pool only this cache puts pages, so a
  page it never offered (or that a get or flush has taken out since) cannot
  be there: the cache remembers, per file, the pages it put and has not got
  back, and asks tmem only for those (``skipped_gets`` counts the rest), as
  frontswap's bitmap does for swap slots.  Skipped gets would have missed:
  what is read from disk does not change.  A file whose record is forgotten
  with pages in tmem (see :meth:`CleanCache._prune`) is asked about for every
  page again when it comes back.  Shared pools are always asked (other
  processes put pages there).
* **Loss of the host** only costs hits: the pool is dropped and the cache goes
  on with the disk.  A page is never served from anywhere but the private
  cache, tmem under the file's current handle, or the file itself.

Known limit: a change made behind the cache's back that leaves size, ctime and
mtime all equal (within the file system's timestamp granularity) is not seen.

Statistics use Linux cleancache's names: ``succ_gets``, ``failed_gets``,
``puts``, ``invalidates``, plus ``skipped_gets`` (tmem not asked: see above),
``reads`` (page reads asked of the cache),
``private_hits``, ``disk_reads`` and ``disk_writes`` (all in pages).  Every
page read is exactly one of ``private_hits``, ``succ_gets``, ``disk_reads``.
"""

from __future__ import annotations

import os
import threading
import uuid as _uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from tmem.api import DEFAULT_PAGE_SIZE, Client, check_page_size
from tmem.errors import InvalidArgument, PermissionDenied
from tmem.frontends.cachedfile import CachedFile
from tmem.frontends.hostcalls import check_count, destroy_quietly, host_lost

#: The counters :meth:`CleanCache.stats` reports, in this order.
COUNTERS: tuple[str, ...] = (
    "reads",
    "private_hits",
    "succ_gets",
    "failed_gets",
    "skipped_gets",
    "puts",
    "failed_puts",
    "invalidates",
    "stale_files",
    "disk_reads",
    "disk_writes",
    "host_lost",
)

_GEN_MASK = (1 << 64) - 1
#: Past this many pages a truncation flushes the whole object instead of page by page.
_FLUSH_RANGE_LIMIT = 1024


@dataclass(eq=False)
class FileRecord:
    """What the cache knows of one file (by device and inode)."""

    dev: int
    ino: int
    pool: int | None  # the tmem pool of its file system, or None
    shared: bool
    gen: int  # change time (ns) of the generation
    gen_size: int  # size of the generation
    size: int
    ctime: int
    mtime: int
    opened: int = 0
    pages: set[int] = field(default_factory=set)  # indexes in the private cache
    #: Indexes put into a private pool under the current object id and not got or
    #: flushed since (pages nowhere else); None: not known, ask tmem for every page.
    offered: set[int] | None = field(default_factory=set)

    def may_hold(self, index: int) -> bool:
        """False only if tmem surely lacks page ``index`` (see :class:`CleanCache`)."""
        return self.shared or self.offered is None or index in self.offered

    def taken(self, index: int) -> None:
        """Page ``index`` left tmem (a get or a flush of it, or a refused put)."""
        if self.offered:
            self.offered.discard(index)

    @property
    def oid(self) -> int:
        """The file's tmem object id."""
        return (
            (self.ino & _GEN_MASK) << 128 | (self.gen & _GEN_MASK) << 64 | self.gen_size & _GEN_MASK
        )

    def new_generation(self) -> None:
        """The file's current state starts a new generation (a new object id)."""
        self.gen, self.gen_size = self.ctime, self.size

    def at_generation(self) -> bool:
        """True if the file is as its generation began: its stat gives back its object id."""
        return (self.gen, self.gen_size) == (self.ctime, self.size)

    def same(self, st: os.stat_result) -> bool:
        """True if ``st`` shows the file as the cache last saw it."""
        return (st.st_size, st.st_ctime_ns, st.st_mtime_ns) == (self.size, self.ctime, self.mtime)

    def remember(self, st: os.stat_result) -> None:
        """Take ``st`` as the file's current state."""
        self.size, self.ctime, self.mtime = st.st_size, st.st_ctime_ns, st.st_mtime_ns


class CleanCache:
    """A private page cache of ``cache_pages`` pages backed by tmem (``client``) and the disk.

    ``client`` may be None: then only the private cache and the disk are used.
    Safe to use from several threads (one lock).
    """

    def __init__(
        self, client: Client | None, cache_pages: int, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self.client = client
        self.cache_pages = check_count("cache_pages", cache_pages)
        self.page_size = check_page_size(page_size)
        self.lock = threading.RLock()
        self._pools: dict[int, tuple[int, bool]] = {}  # st_dev -> (pool id, shared)
        #: pool id -> the guard of its calls (made once: it guards every tmem call)
        self._guards: dict[int, host_lost] = {}
        self._files: dict[tuple[int, int], FileRecord] = {}
        self._lru: OrderedDict[tuple[int, int, int], tuple[FileRecord, bytes]] = OrderedDict()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._closed = False
        self._touched: set[tuple[int, int, int]] | None = None  # see working_set()
        #: (pool, object id) of private files forgotten while tmem may hold their pages
        self._lost_track: set[tuple[int, int]] = set()

    # --- file systems ------------------------------------------------------

    def enable(self, path: str | os.PathLike[str], shared_uuid: _uuid.UUID | None = None) -> bool:
        """Opt the file system holding ``path`` into tmem; True if its pool is shared.

        With ``shared_uuid`` the host's shared pool of that uuid is joined if the
        host authorized this client, else a private pool is made.  Without a
        client this does nothing and returns False.  Enabling twice keeps the
        first pool.
        """
        dev = os.stat(path).st_dev
        with self.lock:
            self._check_open()
            if self.client is None:
                return False
            if dev in self._pools:
                return self._pools[dev][1]
            pool, shared = self._new_pool(shared_uuid)
            self._pools[dev] = (pool, shared)
            self._guards[pool] = host_lost(self._lose_pool, pool)
            for rec in self._files.values():
                if rec.dev == dev:
                    rec.pool, rec.shared = pool, shared
            return shared

    def _new_pool(self, shared_uuid: _uuid.UUID | None) -> tuple[int, bool]:
        assert self.client is not None
        if shared_uuid is not None:
            try:
                pool = self.client.new_pool(
                    persistent=False, shared=True, uuid=shared_uuid, page_size=self.page_size
                )
                return pool, True
            except PermissionDenied:
                pass  # not authorized: a private pool still helps this process
        return self.client.new_pool(persistent=False, page_size=self.page_size), False

    def disable(self, path: str | os.PathLike[str]) -> None:
        """Stop using tmem for the file system holding ``path``; its pool is destroyed."""
        dev = os.stat(path).st_dev
        with self.lock:
            entry = self._pools.pop(dev, None)
            if entry is None:
                return
            self._detach_pool(entry[0])
            destroy_quietly(self.client, entry[0])

    def _detach_pool(self, pool: int) -> None:
        for rec in self._files.values():
            if rec.pool == pool:
                rec.pool, rec.shared, rec.offered = None, False, set()
        self._lost_track = {key for key in self._lost_track if key[0] != pool}

    # --- files ---------------------------------------------------------------

    def open(self, path: str | os.PathLike[str], mode: str = "rb") -> CachedFile:
        """Open ``path`` through the cache (binary modes only: r, w, a, x, with or without +)."""
        with self.lock:
            self._check_open()
        return CachedFile(self, path, mode)

    def unlink(self, path: str | os.PathLike[str]) -> None:
        """Remove ``path``; the file's pages are flushed from the cache and tmem."""
        with self.lock:
            st = os.lstat(path)
            os.unlink(path)
            self._forget(st)

    def rename(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        """Rename ``src`` to ``dst``; a file that ``dst`` replaces is flushed."""
        with self.lock:
            try:
                old = os.lstat(dst)
            except FileNotFoundError:
                old = None
            os.rename(src, dst)
            if old is not None and (old.st_dev, old.st_ino) != _key(os.lstat(dst)):
                self._forget(old)
            rec = self._files.get(_key(os.lstat(dst)))
            if rec is not None:
                self._own_change(rec, os.stat(dst))

    def _forget(self, st: os.stat_result) -> None:
        rec = self._files.get(_key(st))
        if rec is None:
            return
        self._invalidate_file(rec)
        if rec.opened == 0:
            del self._files[(rec.dev, rec.ino)]

    # --- used by CachedFile (under the lock) ------------------------------

    def attach(self, fd: int) -> FileRecord:
        """The record of the open file ``fd``, made or checked against the file."""
        st = os.fstat(fd)
        rec = self._files.get(_key(st))
        if rec is None:
            pool, shared = self._pools.get(st.st_dev, (None, False))
            rec = FileRecord(st.st_dev, st.st_ino, pool, shared, 0, 0, 0, 0, 0)
            rec.remember(st)
            rec.new_generation()
            self._recall(rec)
            self._files[_key(st)] = rec
        else:
            self._check_file(rec, st)
        rec.opened += 1
        return rec

    def detach(self, rec: FileRecord, fd: int) -> None:
        """``fd`` of ``rec`` is being closed; a file with no name left is forgotten."""
        rec.opened -= 1
        if rec.opened == 0 and os.fstat(fd).st_nlink == 0:
            self._invalidate_file(rec)
            self._files.pop((rec.dev, rec.ino), None)
        self._prune(rec)

    def _recall(self, rec: FileRecord) -> None:
        """``rec`` starts an object id: if a forgotten record put pages under it, ask for all."""
        if rec.pool is None or rec.shared:
            return
        key = (rec.pool, rec.oid)
        if key in self._lost_track:
            self._lost_track.discard(key)
            rec.offered = None

    def _prune(self, rec: FileRecord) -> None:
        """Forget a closed file with no private page whose handle its stat gives back.

        Its tmem pages stay reachable: opening it again while unchanged
        derives the same object id, and a changed file gets a new one.  This
        keeps the records bounded by the open files and the cached pages.
        """
        if not rec.opened and not rec.pages and rec.at_generation():
            self._files.pop((rec.dev, rec.ino), None)
            if rec.pool is not None and not rec.shared and (rec.offered is None or rec.offered):
                self._lost_track.add((rec.pool, rec.oid))

    def validate(self, rec: FileRecord, fd: int) -> int:
        """Flush ``rec`` if the file changed behind the cache's back; return its size."""
        self._check_file(rec, os.fstat(fd))
        return rec.size

    def _check_file(self, rec: FileRecord, st: os.stat_result) -> None:
        if rec.same(st):
            return
        self._counts["stale_files"] += 1
        self._invalidate_file(rec)
        rec.remember(st)
        rec.new_generation()
        self._recall(rec)

    def _invalidate_file(self, rec: FileRecord) -> None:
        for index in rec.pages:
            del self._lru[(rec.dev, rec.ino, index)]
        rec.pages.clear()
        if rec.pool is not None:
            self._counts["invalidates"] += 1
            with self._guards[rec.pool]:
                self._tmem.flush_object(rec.pool, rec.oid)
        rec.offered = set()  # the object is empty (or its pool gone)

    def _own_change(self, rec: FileRecord, st: os.stat_result) -> None:
        """The cache itself changed the file: take its new state without flushing.

        Processes sharing the pool may hold the old pages, so a shared file
        moves to a new generation (its old object flushed for everyone).
        """
        rec.remember(st)
        if rec.shared and rec.pool is not None and not rec.at_generation():
            self._counts["invalidates"] += 1
            with self._guards[rec.pool]:
                self._tmem.flush_object(rec.pool, rec.oid)
            rec.new_generation()

    def read(self, rec: FileRecord, fd: int, offset: int, out: memoryview) -> int:
        """Copy the file's bytes from ``offset`` into ``out``; return how many (0 at EOF)."""
        size = self.validate(rec, fd)
        end = min(offset + len(out), size)
        ps = self.page_size
        done = 0
        pos = offset
        while pos < end:
            index, skip = divmod(pos, ps)
            take = min(ps - skip, end - pos)
            out[done : done + take] = self._page(rec, fd, index)[skip : skip + take]
            done += take
            pos += take
        return done

    def _page(self, rec: FileRecord, fd: int, index: int) -> bytes:
        counts = self._counts
        counts["reads"] += 1
        key = (rec.dev, rec.ino, index)
        if self._touched is not None:
            self._touched.add(key)
        hit = self._lru.get(key)
        if hit is not None:
            self._lru.move_to_end(key)
            counts["private_hits"] += 1
            return hit[1]
        page = None
        if rec.pool is not None:
            if rec.may_hold(index):
                with self._guards[rec.pool]:
                    page = self._tmem.get_page(rec.pool, rec.oid, index)
                counts["succ_gets" if page is not None else "failed_gets"] += 1
                rec.taken(index)  # a private get takes the page out; a miss finds none
            else:
                counts["skipped_gets"] += 1
        if page is None:
            page = self._read_disk(fd, index)
        self._insert(rec, index, page)
        return page

    def _read_disk(self, fd: int, index: int) -> bytes:
        ps = self.page_size
        data = os.pread(fd, ps, index * ps)
        self._counts["disk_reads"] += 1
        # Past the end a page reads as zeros, as a file's hole does.
        return data if len(data) == ps else data.ljust(ps, b"\0")

    def _insert(self, rec: FileRecord, index: int, page: bytes) -> None:
        self._lru[(rec.dev, rec.ino, index)] = (rec, page)
        rec.pages.add(index)
        self._evict_over_limit()

    def _evict_over_limit(self) -> None:
        """Give the least recently used pages beyond ``cache_pages`` to tmem."""
        while len(self._lru) > self.cache_pages:
            (_, _, victim_index), (victim, data) = self._lru.popitem(last=False)
            victim.pages.discard(victim_index)
            if victim.pool is not None:
                self._counts["puts"] += 1
                ok = False
                with self._guards[victim.pool]:
                    ok = self._tmem.put_page(victim.pool, victim.oid, victim_index, data)
                if not ok:
                    self._counts["failed_puts"] += 1
                    victim.taken(victim_index)  # a refused put leaves the handle empty
                elif victim.offered is not None and not victim.shared:
                    victim.offered.add(victim_index)
            if not victim.pages:
                self._prune(victim)

    def write(self, rec: FileRecord, fd: int, offset: int, data: memoryview) -> int:
        """Write ``data`` at ``offset`` through to the file, keeping every cached page true."""
        self.validate(rec, fd)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], offset + done)
        if not done:
            return 0
        ps = self.page_size
        first, last = offset // ps, (offset + done - 1) // ps
        self._counts["disk_writes"] += last - first + 1
        for index in range(first, last + 1):
            self._write_page(rec, index, offset, data)
        self._own_change(rec, os.fstat(fd))
        return done

    def _write_page(self, rec: FileRecord, index: int, offset: int, data: memoryview) -> None:
        ps = self.page_size
        start = index * ps
        lo, hi = max(offset, start), min(offset + len(data), start + ps)
        chunk = data[lo - offset : hi - offset]
        key = (rec.dev, rec.ino, index)
        hit = self._lru.get(key)
        if hit is not None:
            page = bytearray(hit[1])
            page[lo - start : hi - start] = chunk
            self._lru[key] = (rec, bytes(page))
            if not rec.shared:
                return  # a private ephemeral page lives in one place: tmem has no copy
        if rec.pool is not None and rec.may_hold(index):
            self._counts["invalidates"] += 1
            with self._guards[rec.pool]:
                self._tmem.flush_page(rec.pool, rec.oid, index)
            rec.taken(index)
        if hit is None and hi - lo == ps:
            self._insert(rec, index, bytes(chunk))

    def truncate(self, rec: FileRecord, fd: int, size: int) -> None:
        """Cut or extend the file to ``size`` bytes; pages past the new end are flushed."""
        old = self.validate(rec, fd)
        os.ftruncate(fd, size)
        ps = self.page_size
        cut = size // ps
        for index in [i for i in rec.pages if i >= cut]:
            key = (rec.dev, rec.ino, index)
            if index == cut and size % ps:
                page = self._lru[key][1]
                self._lru[key] = (rec, page[: size % ps].ljust(ps, b"\0"))
            else:
                del self._lru[key]
                rec.pages.discard(index)
        end = -(-old // ps)
        if rec.pool is not None and end > cut:
            self._flush_range(rec, cut, end)
        self._own_change(rec, os.fstat(fd))

    def _flush_range(self, rec: FileRecord, first: int, end: int) -> None:
        assert rec.pool is not None
        if end - first > _FLUSH_RANGE_LIMIT:
            self._counts["invalidates"] += 1
            with self._guards[rec.pool]:
                self._tmem.flush_object(rec.pool, rec.oid)
            rec.offered = set()
            return
        for index in range(first, end):
            if rec.shared or index not in rec.pages and rec.may_hold(index):
                self._counts["invalidates"] += 1
                with self._guards[rec.pool]:
                    self._tmem.flush_page(rec.pool, rec.oid, index)
                if rec.pool is None:
                    return
                rec.taken(index)

    # --- tmem calls ----------------------------------------------------------

    @property
    def _tmem(self) -> Client:
        """The client; only files of a file system with a pool reach it, so there is one."""
        assert self.client is not None
        return self.client

    def _lose_pool(self, pool: int) -> None:
        """The host or the pool is gone: go on without that pool (see :func:`host_lost`)."""
        self._counts["host_lost"] += 1
        self._pools = {d: e for d, e in self._pools.items() if e[0] != pool}
        self._detach_pool(pool)

    # --- sizing ---------------------------------------------------------------

    def resize(self, cache_pages: int) -> None:
        """Keep at most ``cache_pages`` private pages from now on.

        Shrinking gives the least recently used pages to tmem now, as
        evictions do; growing lets the cache fill again as pages are read.
        """
        with self.lock:
            self.cache_pages = check_count("cache_pages", cache_pages)
            self._evict_over_limit()

    def working_set(self) -> int:
        """Distinct pages read through the cache since the last call (0 on the first).

        The first call starts the count; until then reads are not tracked.
        """
        with self.lock:
            touched, self._touched = self._touched, set()
            return len(touched) if touched is not None else 0

    # --- the rest ------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The counters (see :data:`COUNTERS`), plus ``private_pages`` and ``files``."""
        with self.lock:
            out = dict(self._counts)
            out["private_pages"] = len(self._lru)
            out["files"] = len(self._files)
            out["pools"] = len(self._pools)
            return out

    def close(self) -> None:
        """Drop the private cache and destroy this cache's pools (the client stays open)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            pools, self._pools = self._pools, {}
            self._lru.clear()
            self._files.clear()
            for pool, _shared in pools.values():
                destroy_quietly(self.client, pool)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("this CleanCache is closed")

    def __enter__(self) -> CleanCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino

"""frontswap: a swap area whose pages go to a persistent tmem pool before the swap file.

Design
------
A :class:`Frontswap` stands in front of a real swap file of ``slots`` pages.
:meth:`~Frontswap.store` offers the page to a persistent tmem pool first and
writes the swap file (``os.pwrite``) only when tmem rejects it; one bit per
slot records that a page is in tmem and one that the swap file holds it.
:meth:`~Frontswap.load` reads it back from wherever it is.

* **Handles** follow Linux's tmem frontswap: a slot's low 4 bits pick the
  object, the rest is the index, so no object grows huge.
* **Partial swapoff**: :meth:`~Frontswap.shrink` moves pages from tmem to the
  swap file until tmem holds at most the target; :meth:`~Frontswap.selfshrink_step`
  shrinks toward the persistent target the host publishes for this client
  when the host says it is over it (oldest pages first), else applies Linux's
  frontswap-selfshrink policy (:mod:`tmem.frontends.selfshrink`);
  :meth:`~Frontswap.start_selfshrink` runs it every interval in a thread.
* **Clean offers** (:meth:`~Frontswap.offer`): a page whose swap-file copy is
  still current may be offered to tmem when it is evicted again, so tmem is a
  victim cache of the swap cache; a refused offer makes room as a refused
  store does (below) and is tried again, and costs nothing if still refused.
* **Writeback of the oldest page** (``writeback=True``, the default), as
  zswap does when its pool is full: when tmem refuses a page, the oldest page
  this area holds in tmem is moved to the swap file (a flush if the file
  still holds it) and the store is tried again, up to
  :data:`WRITEBACK_PER_STORE` times, so tmem keeps the most recently
  swapped-out pages instead of the first ones, and a client past its share
  of the host gives back more room than it takes.
* **Writeback order** (``order``): which page is "oldest".  ``"lru"`` writes
  back in the order pages were stored.  ``"adaptive"`` (the default) chooses
  per area, by set-dueling, between that and the *reuse* order of the
  host's ephemeral pools (:mod:`tmem.engine.insertion`): a page loaded back
  from tmem lately goes in as the newest, any other page as the next to be
  written back (one in 32 as the newest), so a loop of pages longer than
  what tmem holds keeps part of itself in tmem instead of none.
* **Which page of that order goes** (``eviction``): ``"frequency"`` (the
  default) writes back, of the :data:`SAMPLE` first pages of the order, the
  one loaded least often lately (the first on ties); every load of a slot,
  from tmem or the file, counts (a fault: reuse beyond the guest's resident
  pages), per slot, halved each :data:`WINDOW` times the pages in tmem of
  loads.  ``"lru"`` writes back the first page.
* **Write-behind** (``write_behind=True``): a thread copies each page stored in
  tmem to the swap file too, so losing the host loses nothing once
  :meth:`~Frontswap.sync` has returned.
* **Loss of the host** (``ConnectionLost``, or the pool gone): the pages that
  were only in tmem are lost; loading any of them raises
  :class:`~tmem.frontends.errors.PagesLost`, naming every lost slot.  Stores go
  on to the swap file.  A load never returns anything but the page stored:
  with ``verify`` (the default) each slot keeps a 64-bit checksum of its page,
  and a page tmem returns with another checksum is treated as missing.

Statistics use Linux frontswap's names: ``succ_stores``, ``failed_stores``,
``loads`` (pages loaded from tmem), ``invalidates``, plus ``swap_reads`` and
``swap_writes`` (pages read from and written to the swap file) and
``tmem_pages`` (pages in tmem now).
"""

from __future__ import annotations

import os
import threading
from array import array
from collections import deque
from typing import Any

import xxhash

from tmem.api import DEFAULT_PAGE_SIZE, Client, Stats, check_page_size
from tmem.errors import InvalidArgument
from tmem.frontends.bitmap import Bitmap
from tmem.frontends.errors import EmptySlot, PagesLost
from tmem.frontends.hostcalls import check_count, destroy_quietly, host_lost
from tmem.frontends.selfshrink import SelfShrink
from tmem.setdueling import Duel, check_order, hit_limit, shadow_mask

#: The counters :meth:`Frontswap.stats` reports besides the page counts.
COUNTERS: tuple[str, ...] = (
    "succ_stores",
    "failed_stores",
    "loads",
    "invalidates",
    "invalidate_areas",
    "swap_reads",
    "swap_writes",
    "shrunk_pages",
    "written_back",
    "written_behind",
    "clean_offers",
    "clean_stored",
    "target_shrunk",
    "selfshrink_steps",
    "host_lost",
    "corrupt_pages",
)

#: Pages moved to the swap file (oldest first) at most per refused store or offer
#: before giving up (two: one to make room, one more for a client over its target).
WRITEBACK_PER_STORE = 2

#: Toward the host's target, at most this part of the pages held moves per interval
#: (Linux's 1/hysteresis, a twentieth, read 1.6% more on the default mix replayed and
#: 3% more on clones; all at once 0.7% and 1.1% less, in bursts of swap writes).
TARGET_SHRINK_PART = 4

#: Which page of the writeback order goes: the least faulted of the oldest
#: (the default) or simply the oldest; see ``eviction`` in the module's docstring.
EVICTIONS: tuple[str, ...] = ("frequency", "lru")
#: Of this many pages next to go, the least faulted goes (replayed on the shipped
#: mixes: 16 and 32 read more on ``clones``, 128 and 256 more on ``late-loop``).
SAMPLE = 64
#: Fault counts are halved each time this many times the pages in tmem were loaded.
WINDOW = 10
#: A fault count stops here.
LIMIT = 15
_HALVE = bytes(i >> 1 for i in range(256))


def check_eviction(eviction: object) -> str:
    """``eviction`` if it names a way of :data:`EVICTIONS`, else InvalidArgument."""
    if eviction not in EVICTIONS:
        raise InvalidArgument(f"eviction {eviction!r} must be one of {', '.join(EVICTIONS)}")
    return str(eviction)


_SWIZ_BITS = 4
_SWIZ_MASK = (1 << _SWIZ_BITS) - 1


def _handle(slot: int) -> tuple[int, int]:
    """A slot's tmem ``(oid, index)``: spread over 16 objects, as Linux's frontswap does."""
    return slot & _SWIZ_MASK, slot >> _SWIZ_BITS


class Frontswap:
    """A swap area of ``slots`` pages: a persistent tmem pool in front of ``swap_path``.

    ``client`` may be None: then every page goes to the swap file.  The swap
    file is created if needed and sized to ``slots * page_size`` (sparse).
    Safe to use from several threads (one lock).
    """

    def __init__(
        self,
        client: Client | None,
        swap_path: str | os.PathLike[str],
        slots: int,
        page_size: int = DEFAULT_PAGE_SIZE,
        write_behind: bool = False,
        selfshrink: SelfShrink | None = None,
        verify: bool = True,
        writeback: bool = True,
        shrink_to_target: bool = True,
        order: str = "adaptive",
        eviction: str = "frequency",
    ) -> None:
        self.slots = check_count("slots", slots)
        self.page_size = check_page_size(page_size)
        self.client = client
        self.path = os.fspath(swap_path)
        self.selfshrink = selfshrink if selfshrink is not None else SelfShrink()
        self.shrink_to_target = shrink_to_target
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._in_tmem = Bitmap(slots)
        self._in_file = Bitmap(slots)
        self._sums = array("Q", bytes(8 * slots)) if verify else None
        self._lost: set[int] = set()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._guard = host_lost(self._host_lost)  # made once: it guards every tmem call
        self._cursor = 0
        # Stores in order, oldest first, as (slot, store number); an entry is
        # stale once its slot was stored again or left tmem.
        self._writeback = writeback
        self.order = check_order(order)  # writeback orders: see the module's docstring
        self._duel = Duel() if self.order == "adaptive" else None
        self._duel_mask = shadow_mask(slots)
        self._hit_limit = hit_limit(slots)
        self._decay_at = 0  # write-backs until the duel's misses are halved
        self._order: deque[tuple[int, int]] = deque()
        self.eviction = check_eviction(eviction)
        # faults per slot lately (tmem or file), for the "frequency" writeback
        self._faults = bytearray(slots) if self.eviction == "frequency" else None
        self._faults_counted = 0
        self._stored_at = array("Q", bytes(8 * slots))
        self._stores = 0
        self._closed = False
        self._pending: deque[int] | None = deque() if write_behind else None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(self._fd, slots * page_size)
            self.pool = None if client is None else client.new_pool(True, page_size=page_size)
        except BaseException:
            os.close(self._fd)
            raise
        if write_behind:
            self._spawn(self._write_behind, "tmem-frontswap-writebehind")

    # --- the swap operations ---------------------------------------------

    def store(self, slot: int, page: Any) -> None:
        """Keep ``page`` in ``slot``: in tmem if it accepts it, else in the swap file."""
        slot = self._check_slot(slot)
        data = self._check_page(page)
        with self.lock:
            self._check_open()
            self._lost.discard(slot)
            if self.pool is not None and self._put_making_room(slot, data):
                return self._stored_in_tmem(slot, data)
            # A rejected duplicate put already flushed the old page in tmem.
            self._in_tmem.clear(slot)
            if self.client is not None:
                self._counts["failed_stores"] += 1
            self._write_file(slot, data)

    def offer(self, slot: int, page: Any) -> bool:
        """Offer tmem a clean copy of a page the swap file already holds; True if it took it.

        For a page read back from the swap file and evicted again unchanged:
        tmem becomes a victim cache of the swap cache.  A refused offer moves
        this area's oldest pages to the swap file and tries again, as a
        refused store does: without that, tmem kept the pages it took first
        and read more than a static split (docs/workload.md).  The copy joins
        the pages in tmem, oldest first, and moving it out later (writeback,
        self-shrinking) is a flush, not a write.
        """
        slot = self._check_slot(slot)
        data = self._check_page(page)
        with self.lock:
            self._check_open()
            if self.pool is None or self._in_tmem[slot] or not self._in_file[slot]:
                return False
            self._counts["clean_offers"] += 1
            if not self._put_making_room(slot, data):
                return False
            if self._sums is not None:
                self._sums[slot] = xxhash.xxh3_64_intdigest(data)
            self._in_tmem.set(slot)
            self._counts["clean_stored"] += 1
            if self._writeback:
                self._remember(slot)
            return True

    def holds_in_file(self, slot: int) -> bool:
        """True if the swap file holds the slot's current page."""
        return self._in_file[self._check_slot(slot)]

    def drop_from_tmem(self, slot: int) -> None:
        """Forget the slot's tmem copy while the swap file keeps the page (an exclusive
        load of a clean page)."""
        slot = self._check_slot(slot)
        with self.lock:
            self._check_open()
            if self._in_tmem[slot] and self._in_file[slot]:
                self._flush(slot)
                self._in_tmem.clear(slot)

    def _put_making_room(self, slot: int, data: bytes) -> bool:
        """Put the page in tmem; if refused (and ``writeback``), move this area's oldest
        pages to the swap file, up to :data:`WRITEBACK_PER_STORE`, retrying after each.

        The newest page is worth more than the oldest; a client that the host
        refuses for being over its persistent target gives back more than it
        takes, so it shrinks toward the target as it stores.
        """
        if self._put(slot, data):
            return True
        for _ in range(WRITEBACK_PER_STORE if self._writeback else 0):
            if not self._write_back_oldest() or self.pool is None:
                return False
            if self._put(slot, data):
                return True
        return False

    def _stored_in_tmem(self, slot: int, data: bytes) -> None:
        if self._sums is not None:
            self._sums[slot] = xxhash.xxh3_64_intdigest(data)
        self._in_tmem.set(slot)
        self._in_file.clear(slot)
        self._counts["succ_stores"] += 1
        if self._writeback:
            self._remember(slot)
        if self._pending is not None:
            self._pending.append(slot)
            self._changed.notify_all()

    def _remember(self, slot: int) -> None:
        """Note that ``slot`` is now in tmem: the newest page, or under the *reuse* order
        the next to be written back (see ``order``)."""
        self._stores += 1
        self._stored_at[slot] = self._stores
        duel = self._duel
        if duel is not None and duel.put((0, 0, slot), self._in_tmem.count, self._duel_mask):
            self._order.appendleft((slot, self._stores))
        else:
            self._order.append((slot, self._stores))
        if len(self._order) > 2 * self._in_tmem.count + 1024:  # drop stale entries
            self._order = deque(e for e in self._order if self._is_current(*e))

    def _is_current(self, slot: int, stored_at: int) -> bool:
        return self._in_tmem[slot] and self._stored_at[slot] == stored_at

    def _next_to_go(self) -> tuple[int, int] | None:
        """Take the page to write back out of the order: the oldest, or under the
        "frequency" eviction the least faulted of the :data:`SAMPLE` oldest."""
        order = self._order
        while order and not self._is_current(*order[0]):
            order.popleft()
        if not order:
            return None
        faults = self._faults
        if faults is None:
            return order.popleft()
        best, best_count, seen = 0, LIMIT + 1, 0
        for i, (slot, stored_at) in enumerate(order):
            if seen >= SAMPLE:
                break
            if not self._is_current(slot, stored_at):
                continue
            seen += 1
            if faults[slot] < best_count:
                best, best_count = i, faults[slot]
                if not best_count:
                    break
        entry = order[best]
        del order[best]
        return entry

    def _write_back_oldest(self, counter: str = "written_back") -> bool:
        """Move the oldest page this area has in tmem to the swap file; False if none."""
        while self.pool is not None:
            entry = self._next_to_go()
            if entry is None:
                return False
            slot, stored_at = entry
            if self._is_current(slot, stored_at) and self._move_to_file(slot):
                self._counts[counter] += 1
                if self._duel is not None:
                    self._decay_at -= 1
                    if self._decay_at <= 0:  # recent loads count most
                        self._duel.decay()
                        self._decay_at = max(64, self._in_tmem.count)
                return True
        return False

    def load(self, slot: int) -> bytes:
        """The page stored in ``slot``; PagesLost if the host lost it, EmptySlot if none."""
        slot = self._check_slot(slot)
        with self.lock:
            self._check_open()
            if slot in self._lost:
                raise PagesLost(self._lost)
            if self._faults is not None:
                self._count_fault(slot)
            if self._in_tmem[slot]:
                page = self._get(slot)
                if page is not None:
                    self._counts["loads"] += 1
                    self._duel_load(slot, True)
                    return page
                self._page_missing(slot)
            if self._in_file[slot]:
                self._duel_load(slot, False)
                self._counts["swap_reads"] += 1
                return self._read_file(slot)
            raise EmptySlot(f"swap slot {slot} holds no page")

    def _count_fault(self, slot: int) -> None:
        """One more load of ``slot``; every count halved each :data:`WINDOW` times the
        pages in tmem of loads."""
        faults = self._faults
        assert faults is not None
        if faults[slot] < LIMIT:
            faults[slot] += 1
        self._faults_counted += 1
        if self._faults_counted >= WINDOW * max(64, self._in_tmem.count):
            self._faults_counted = 0
            self._faults = faults.translate(_HALVE)

    def _duel_load(self, slot: int, hit: bool) -> None:
        """A load of ``slot`` (``hit``: from tmem) replayed in the adaptive order's shadows."""
        if self._duel is not None and self._writeback:
            self._duel.get((0, 0, slot), hit, self._hit_limit, self._duel_mask)

    def _page_missing(self, slot: int) -> None:
        """A page marked in tmem did not come back: fall back to the file or report it lost."""
        self._broken(slot)
        if slot in self._lost:
            raise PagesLost(self._lost, f"the tmem host no longer has slot {slot}")

    def _broken(self, slot: int) -> None:
        """tmem failed to give back the slot's page: lost unless the swap file has it."""
        self._in_tmem.clear(slot)
        if not self._in_file[slot]:
            self._lost.add(slot)

    def invalidate(self, slot: int) -> None:
        """Free ``slot``: its page is forgotten wherever it is."""
        slot = self._check_slot(slot)
        with self.lock:
            self._check_open()
            held = self._in_tmem[slot] or self._in_file[slot] or slot in self._lost
            if self._in_tmem[slot]:
                self._flush(slot)
                self._in_tmem.clear(slot)
            self._in_file.clear(slot)
            self._lost.discard(slot)
            if held:
                self._counts["invalidates"] += 1

    def invalidate_area(self) -> None:
        """Free every slot (swapoff of the whole area)."""
        with self.lock:
            self._check_open()
            if self.pool is not None and self._in_tmem.count:
                for oid in range(1 << _SWIZ_BITS):
                    if self.pool is None:
                        break
                    client, pool = self._tmem()
                    with self._guard:
                        client.flush_object(pool, oid)
            self._in_tmem.clear_all()
            self._in_file.clear_all()
            self._order.clear()
            self._lost.clear()
            if self._pending is not None:
                self._pending.clear()
            self._counts["invalidate_areas"] += 1

    # --- shrinking -----------------------------------------------------------

    def shrink(self, target_pages: int) -> int:
        """Move pages from tmem to the swap file until tmem holds at most ``target_pages``.

        Returns how many pages left tmem for the swap file.  The lock is taken
        page by page, so stores and loads go on meanwhile.
        """
        if type(target_pages) is not int or target_pages < 0:
            raise InvalidArgument(f"target_pages must be an integer >= 0, not {target_pages!r}")
        moved = 0
        while True:
            with self.lock:
                self._check_open()
                if self._in_tmem.count <= target_pages or self.pool is None:
                    break
                slot = self._in_tmem.next_set(self._cursor)
                self._cursor = (slot + 1) % self.slots
                if self._move_to_file(slot):
                    self._counts["shrunk_pages"] += 1
                    moved += 1
        return moved

    def _move_to_file(self, slot: int) -> bool:
        if not self._in_file[slot]:
            page = self._get(slot)
            if page is None:
                if self.pool is not None:  # the host broke its promise for this page
                    self._broken(slot)
                return False
            self._write_file(slot, page)
        self._flush(slot)
        self._in_tmem.clear(slot)
        return True

    def selfshrink_step(self) -> int:
        """Run one interval of the self-shrinking policy; return the pages moved.

        When the host publishes a persistent target for this client and says it
        is over it (``persistent_over`` in the client's stats), the oldest pages
        in tmem move to the swap file toward the target, at most
        ``1/TARGET_SHRINK_PART`` of the pages held per interval (at least one).
        Otherwise Linux's policy applies: shrink once tmem use stops growing.
        """
        over = self._host_says_over() if self.shrink_to_target else None
        if over is not None:
            return self._shrink_toward_target(over)
        with self.lock:
            target = self.selfshrink.step(self._in_tmem.count)
        if target is None:
            return 0
        self._counts["selfshrink_steps"] += 1
        return self.shrink(target)

    def _host_says_over(self) -> int | None:
        """Bytes the host says this client holds above its persistent target (None: the
        host publishes no target)."""
        if self.client is None or self.pool is None:
            return None
        stats: Stats = {}
        with self._guard:
            stats = self.client.stats()
        over = stats.get("persistent_over")
        return over if isinstance(over, int) else None

    def _shrink_toward_target(self, over: int) -> int:
        with self.lock:
            held = self._in_tmem.count
            if over <= 0 or not held:
                return 0
            self._counts["selfshrink_steps"] += 1
            per_page = max(1, self._pool_bytes() // held)
            pages = min(-(-over // per_page), max(1, held // TARGET_SHRINK_PART))
        moved = 0
        for _ in range(pages):
            with self.lock:
                if not self._write_back_oldest(counter="target_shrunk"):
                    break
            moved += 1
        if moved < pages:  # no order kept (writeback off): slot order
            with self.lock:
                held = self._in_tmem.count
            moved += self.shrink(max(0, held - (pages - moved)))
        return moved

    def _pool_bytes(self) -> int:
        """Bytes the host charges for this area's pages (its persistent pool)."""
        assert self.client is not None
        pools = self.client.stats().get("pools", {})
        entry = pools.get(self.pool) or pools.get(str(self.pool)) or {}
        return int(entry.get("bytes", 0)) or self.page_size * max(1, self._in_tmem.count)

    def start_selfshrink(self, interval: float) -> None:
        """Run :meth:`selfshrink_step` every ``interval`` seconds in a thread until close."""
        if not isinstance(interval, int | float) or not interval > 0:
            raise InvalidArgument(f"interval must be a number of seconds > 0, not {interval!r}")
        self._spawn(lambda: self._selfshrink_loop(float(interval)), "tmem-frontswap-selfshrink")

    def _selfshrink_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.selfshrink_step()
            except InvalidArgument:
                if self._closed:
                    return  # closed while shrinking
                raise

    # --- write-behind --------------------------------------------------------

    def _write_behind(self) -> None:
        pending = self._pending
        assert pending is not None
        while True:
            with self._changed:
                while not pending and not self._stop.is_set():
                    self._changed.wait()
                if self._stop.is_set():
                    return
                slot = pending.popleft()
                if self._in_tmem[slot] and not self._in_file[slot]:
                    page = self._get(slot)
                    if page is not None:
                        self._write_file(slot, page)
                        self._counts["written_behind"] += 1
                    elif self.pool is not None:
                        self._broken(slot)
                self._changed.notify_all()

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until write-behind has copied every page stored so far; False on timeout."""
        with self._changed:
            if self._pending is None:
                return True
            return self._changed.wait_for(lambda: not self._pending, timeout)

    # --- tmem and the swap file ----------------------------------------------

    def _tmem(self) -> tuple[Client, int]:
        """The client and the pool, for a caller that knows the area has a pool."""
        assert self.client is not None and self.pool is not None
        return self.client, self.pool

    def _put(self, slot: int, data: bytes) -> bool:
        """Offer the slot's page to tmem; False if refused or the host is gone."""
        client, pool = self._tmem()
        stored = False
        with self._guard:
            stored = client.put_page(pool, *_handle(slot), data)
        return stored

    def _flush(self, slot: int) -> None:
        """Flush the slot's page from tmem."""
        client, pool = self._tmem()
        with self._guard:
            client.flush_page(pool, *_handle(slot))

    def _get(self, slot: int) -> bytes | None:
        """The slot's page from tmem, or None if it is gone or not the page stored."""
        client, pool = self._tmem()
        page = None
        with self._guard:
            page = client.get_page(pool, *_handle(slot))
        if page is None or self._sums is None:
            return page
        if xxhash.xxh3_64_intdigest(page) == self._sums[slot]:
            return page
        self._counts["corrupt_pages"] += 1
        self._flush(slot)
        self._in_tmem.clear(slot)
        return None

    def _host_lost(self) -> None:
        """The pool is gone: pages only it held are lost; the swap file's copies remain."""
        self._counts["host_lost"] += 1
        self.pool = None
        for slot in self._in_tmem.iter_set():
            if not self._in_file[slot]:
                self._lost.add(slot)
        self._in_tmem.clear_all()
        if self._pending is not None:
            self._pending.clear()

    def _write_file(self, slot: int, data: bytes | memoryview) -> None:
        ps = self.page_size
        done = 0
        while done < ps:
            done += os.pwrite(self._fd, data[done:], slot * ps + done)
        self._in_file.set(slot)
        self._counts["swap_writes"] += 1

    def _read_file(self, slot: int) -> bytes:
        ps = self.page_size
        data = os.pread(self._fd, ps, slot * ps)
        if len(data) != ps:
            raise OSError(f"short read of swap slot {slot} from {self.path!r}")
        return data

    # --- checks, statistics, lifetime -----------------------------------------

    def _check_slot(self, slot: Any) -> int:
        if type(slot) is not int or not 0 <= slot < self.slots:
            raise InvalidArgument(f"swap slot {slot!r} is outside [0, {self.slots})")
        return slot

    def _check_page(self, page: Any) -> bytes:
        # A snapshot, so that tmem, the checksum and the swap file all see the same bytes.
        try:
            data = page if type(page) is bytes else bytes(memoryview(page).cast("B"))
        except TypeError:
            raise InvalidArgument(f"a page must be bytes-like, not {type(page).__name__}") from None
        if len(data) != self.page_size:
            raise InvalidArgument(f"a page is {self.page_size} bytes, not {len(data)}")
        return data

    def lost_slots(self) -> tuple[int, ...]:
        """The slots whose pages went with a lost host, in order."""
        with self.lock:
            return tuple(sorted(self._lost))

    def stats(self) -> dict[str, int]:
        """The counters (:data:`COUNTERS`) and the pages held: tmem, file, lost."""
        with self.lock:
            out = dict(self._counts)
            out["tmem_pages"] = self._in_tmem.count
            out["file_pages"] = self._in_file.count
            out["lost_pages"] = len(self._lost)
            out["pending_writes"] = len(self._pending) if self._pending is not None else 0
            return out

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("this Frontswap is closed")

    def close(self) -> None:
        """Stop the threads, destroy the pool and close the swap file (which stays on disk)."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._changed.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        with self.lock:
            destroy_quietly(self.client, self.pool)
            self.pool = None
            os.close(self._fd)

    def __enter__(self) -> Frontswap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

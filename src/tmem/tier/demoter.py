"""The host's side of its tiers: demotion in the background, promotion on get.

:class:`TierSet` is what a :class:`tmem.Host` with tiers holds.  Its thread
runs :meth:`TierSet.step` whenever the RAM store is past the high watermark
(:data:`HIGH_WATERMARK` of the capacity): one step takes at most
:data:`STEP_PAGES` of the coldest pages (chosen by the engine, under the
host's lock), writes them to the first tier that takes them (outside the
lock), and lets the engine move those still unchanged (under the lock again).
Steps continue until usage is down to :data:`LOW_WATERMARK`.  Each step also
frees tier copies no page refers to any more, and forgets pages a tier
dropped on its own.

A get of a demoted page is finished by :meth:`TierSet.fetch`, synchronously
but **outside the host's lock**: one load from the tier, then, under the lock,
the engine's rules, provided the page is still the version that was read; if
a put or flush changed it meanwhile, that call wins and the get is asked
again (:data:`FETCH_ATTEMPTS` times, then once more under the lock).  So a
slow tier stalls only the gets that need it.  A tier that cannot answer
makes an ephemeral get miss and a persistent get raise
:class:`tmem.TierError` (the page stays where it is).  Bringing the page
back to RAM is left to the background thread, off the get's path (the
pages waiting for it may hold :meth:`TierSet.pending_limit` bytes: a
sixteenth of the capacity, at least :data:`PENDING_MIN_BYTES`; past that, and
without the thread, it is done at once).

The thread keeps out of the way of gets of demoted pages: while they keep
coming (one began less than :data:`BUSY_NS` ago) it brings pages back only
once the waiting ones hold more than half that limit, and then one page each
time a get starts reading its tier (while that get waits for the disk or the
network, off the CPU and without the interpreter); and it frees tier copies
only once more than :data:`BUSY_GARBAGE` wait.  Both cost the gets time: a
promotion holds the lock and the interpreter, and a free is a round trip and
work on the node a get is waiting for.  Nor does it poll: with nothing to do
it sleeps (:data:`IDLE_WAIT`) until a put takes RAM past the high watermark,
or a get fills the promotion queue past half its limit, wakes it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from tmem.engine import Engine
from tmem.engine.state import ClientState
from tmem.engine.tiering import (
    Candidate,
    Fetch,
    attach_tiers,
    bring_back,
    complete_demotions,
    finish_get,
    forget_dropped,
    note_failure,
    pick_demotions,
    retract_get,
    take_garbage,
    trim_demoted,
)
from tmem.errors import TierError, TmemError
from tmem.store.export import decode_export
from tmem.tier import fastload
from tmem.tier.base import Demotion, QuickLoading, Tier

log = logging.getLogger("tmem.tier")
#: A page from its export, compiled where built (lz4 without letting go of the interpreter:
#: python-lz4 lets go even for a page, and a get back from its read may then wait for it).
_decode: Final = fastload.decode_export or decode_export
_clock: Final = time.perf_counter_ns

#: Demotion starts when the RAM store passes this share of the capacity...
HIGH_WATERMARK = 0.85
#: ...and stops when usage is back down to this share.
LOW_WATERMARK = 0.70
#: Pages one step demotes at most (bounded work under the lock).
STEP_PAGES = 256
#: Past this share of the capacity the background thread is not keeping up: a put
#: runs a demotion step itself (as Linux's direct reclaim helps kswapd), so that
#: cold pages go down to a tier rather than being evicted to make room.
ASSIST_WATERMARK = 0.95
#: Seconds the thread sleeps when it has nothing to do (a put past the high watermark, or
#: a get whose promotion queue passes half its limit, wakes it at once).
IDLE_WAIT = 0.05
REFUSED_WAIT = 0.5
#: Fetch latencies kept per tier for the percentiles in ``stats()``.
LATENCY_SAMPLES = 4096
#: Times a get is asked again when its page changed while its tier copy was read.
FETCH_ATTEMPTS: Final = 3
#: Fetched pages waiting to be brought back to RAM by the thread hold at most this share
#: of the host's capacity (1/16)...
PENDING_SHARE = 16
#: ...or this many bytes, if more.
PENDING_MIN_BYTES = 2 << 20
#: Promotions done per hold of the host's lock (bounded work under it): a few, so that a
#: get back from its I/O never waits long for the interpreter or the lock (the thread
#: lets go of both between holds).
PROMOTIONS_PER_HOLD = 8
#: Seconds the thread sleeps between those holds: long enough for a thread that waits for the
#: interpreter to take it (a zero sleep hands it back to this thread at once).
PROMOTION_PAUSE = 50e-6
#: Gets of demoted pages are "coming" while one began less than this many nanoseconds ago.
BUSY_NS = 2_000_000
#: Meanwhile fetched pages wait for their promotion until they hold more than half the
#: limit, and tier copies no page refers to wait to be freed until more than this many wait.
BUSY_GARBAGE = 1024
#: Seconds the thread waits for a get to start reading its tier before it looks again.
READ_WAIT = 0.002


class TierSet:
    """The tiers below one host's RAM store, in order, and the thread that feeds them."""

    def __init__(
        self, engine: Engine, lock: threading.Lock, tiers: Sequence[Tier], background: bool = True
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.tiers = list(tiers)
        self._loads = [tier.load for tier in self.tiers]  # bound once: gets call them
        #: Per tier, whether it may offer a quick load (:class:`tmem.tier.base.QuickLoading`),
        #: read at each get: the tier may drop it (the SSD tier, when it leaves O_DIRECT).
        self._quick = [hasattr(tier, "quick_load") for tier in self.tiers]
        #: What turns a loaded export into its page (the compiled decoder where built).
        self.decode: Callable[[bytes], bytes | None] = _decode
        attach_tiers(engine, [tier.index_bytes_per_page for tier in self.tiers])
        self.latency: list[collections.deque[int]] = [
            collections.deque(maxlen=LATENCY_SAMPLES) for _ in self.tiers
        ]
        self.fetches = [0] * len(self.tiers)
        self.steps = 0
        self.assists = 0  # steps run by puts
        #: Whether puts help demotion (:meth:`assist`); with background demotion only, so
        #: that a host without it demotes only when asked.
        self.assisting = background
        self._stepping = threading.Lock()  # one step at a time: two would pick the same pages
        self.pending: collections.deque[tuple[Fetch, bytes]] = collections.deque()
        self.pending_bytes = 0  # of the exports in ``pending`` (changed under the lock)
        #: :meth:`pending_limit` as the thread last computed it (gets read it: no call)
        self.pending_cap = self.pending_limit()
        #: When the last get of a demoted page began (``perf_counter_ns``): see :meth:`busy`.
        self.last_fetch = 0
        #: Released by a get about to read its tier while the thread waits for one (armed).
        self._reading = threading.Lock()
        self._reading.acquire()
        self._armed = False
        self._stop = threading.Event()
        #: Set to wake the sleeping thread at once: by a put past the high watermark, by a
        #: get that fills the promotion queue past half its limit (each once per sleep).
        self._wake = threading.Event()
        self._woken = False
        self._worker: threading.Thread | None = None
        if background:
            self._worker = threading.Thread(target=self._run, name="tmem-demoter", daemon=True)
            self._worker.start()

    # --- promotion (called without the host's lock) --------------------------------

    def fetch(
        self, client: ClientState, fetch: Fetch, pool: Any, oid: Any, index: Any
    ) -> bytes | None:
        """Finish a get of a demoted page: load it outside the lock, then apply the get's
        rules if the page did not change meanwhile.

        The engine's get of ``(pool, oid, index)`` is asked again (under the
        lock) when a put or flush changed the page while it was read: that call
        wins, and the get answers what it left.  The load and its checks run in
        the calling thread (no hand-off to another thread, no other thread
        woken unless the promotion queue grows past half its limit); bringing
        the page back to RAM is only queued here.
        """
        engine, lock = self.engine, self.lock
        table = engine.table
        for _ in range(FETCH_ATTEMPTS):
            number = fetch.tier
            self.last_fetch = start = _clock()
            if self._armed:  # the thread waits to promote a page while this get reads
                self._signal_read()
            try:
                blob = self._load(number, fetch.loc, fetch.tag)
                if blob is None:
                    data = None
                elif (data := self.decode(blob)) is None:  # a codec the compiled one leaves
                    data = decode_export(blob)
                error = None
            except TmemError as exc:  # a tier error, or a blob that does not decode
                blob = data = None
                error = exc
            took = _clock() - start
            lock.acquire()
            try:
                self.latency[number].append(took)
                self.fetches[number] += 1
                pid = fetch.pid
                if table.ver[pid] == fetch.tag and table.tier[pid] == number + 1:  # unchanged()
                    return self._finish(client, fetch, blob, data, error)
                retract_get(client, fetch)
                result = engine.get(client, pool, oid, index)
            finally:
                lock.release()
            if not isinstance(result, Fetch):
                return result
            fetch = result
        with lock:  # the page changed on every try: read it under the lock this once
            retract_get(client, fetch)
            result = engine.get(client, pool, oid, index)
            if not isinstance(result, Fetch):
                return result
            blob, data, error, took = self._load_once(result)
            self._count(result, took)
            return self._finish(client, result, blob, data, error)

    def _load(self, number: int, loc: int, tag: int) -> bytes | None:
        """Tier ``number``'s load of ``(loc, tag)``, by its quick load where it has one."""
        found: bytes | bool | None = False
        if self._quick[number]:
            quick = cast(QuickLoading, self.tiers[number]).quick_load
            if quick is not None:
                try:
                    found = quick(loc, tag)
                except (OSError, ValueError):
                    found = False  # the tier's own load says what failed, and counts it
        if found is False:
            return self._loads[number](loc, tag)
        return found  # type: ignore[return-value]

    def _load_once(
        self, fetch: Fetch
    ) -> tuple[bytes | None, bytes | None, TmemError | None, int]:
        """The page's export, the page, or the tier's error; and the nanoseconds it took."""
        tier = self.tiers[fetch.tier]
        start = _clock()
        blob = data = error = None
        try:
            blob = tier.load(fetch.loc, fetch.tag)
            data = None if blob is None else decode_export(blob)
        except TmemError as exc:  # a tier error, or a blob that does not decode
            blob, data, error = None, None, exc
        return blob, data, error, _clock() - start

    def _count(self, fetch: Fetch, took: int) -> None:
        """Record a fetch and its latency (under the host's lock, as :meth:`stats` reads)."""
        self.latency[fetch.tier].append(took)
        self.fetches[fetch.tier] += 1

    def _finish(
        self,
        client: ClientState,
        fetch: Fetch,
        blob: bytes | None,
        data: bytes | None,
        error: TmemError | None,
    ) -> bytes | None:
        """The get's rules for a loaded page (under the lock; the page is unchanged)."""
        engine = self.engine
        if error is None and blob is None and fetch.pool.persistent:
            error = TierError(f"the {self.tiers[fetch.tier].name} tier has lost a persistent page")
        if error is not None:
            note_failure(engine, client, fetch)
            if fetch.pool.persistent:
                raise error
            return None
        if finish_get(engine, client, fetch, blob is not None):
            if self._worker is not None and self.pending_bytes < self.pending_cap:
                self.pending.append((fetch, blob))  # type: ignore[arg-type]
                self.pending_bytes += len(blob)  # type: ignore[arg-type]
                if self.pending_bytes > self.pending_cap // 2 and not self._woken:
                    self._kick()  # the thread promotes while the gets keep coming
            else:
                bring_back(engine, fetch, blob)  # type: ignore[arg-type]
        return data

    def _kick(self) -> None:
        """Wake the thread if it sleeps (once per sleep: it clears ``_woken`` first)."""
        self._woken = True
        self._wake.set()

    def _signal_read(self) -> None:
        self._armed = False
        with contextlib.suppress(RuntimeError):  # another get signalled it first
            self._reading.release()

    def pending_limit(self) -> int:
        """Bytes the pages waiting for their promotion may hold: a :data:`PENDING_SHARE`
        of the capacity, at least :data:`PENDING_MIN_BYTES`."""
        return max(PENDING_MIN_BYTES, self.engine.capacity // PENDING_SHARE)

    def busy(self) -> bool:
        """Whether gets of demoted pages are coming (one began within :data:`BUSY_NS`)."""
        return _clock() - self.last_fetch < BUSY_NS

    def promote_pending(self, defer: bool = False) -> int:
        """Bring fetched pages back to RAM, letting other threads have the interpreter
        between holds of the lock; how many were looked at.

        :data:`PROMOTIONS_PER_HOLD` per hold; while gets of demoted pages are
        coming, one per hold.  With ``defer`` (the thread), while they come,
        none until they hold more than half :meth:`pending_limit`, and then one each
        time a get starts reading its tier (returning when none did within
        :data:`READ_WAIT`).
        """
        n = 0
        pending = self.pending
        while pending:
            busy = self.busy()
            if busy and defer:
                if self.pending_bytes <= self.pending_limit() // 2:
                    break  # later, when the gets pause or the queue grows
                self._armed = True
                woken = self._reading.acquire(timeout=READ_WAIT)
                self._armed = False
                if not woken:
                    break
            with self.lock:
                for _ in range(min(len(pending), 1 if busy else PROMOTIONS_PER_HOLD)):
                    fetch, blob = pending.popleft()
                    self.pending_bytes -= len(blob)
                    bring_back(self.engine, fetch, blob)
                    n += 1
            if not (busy and defer):
                time.sleep(PROMOTION_PAUSE)  # a get back from its I/O waits for one hold at most
        return n

    # --- demotion -------------------------------------------------------------------

    def assist(self) -> int:
        """After a put: one demotion step in the caller's thread if RAM is past
        :data:`ASSIST_WATERMARK` and no step is running; the pages moved."""
        engine = self.engine
        used, capacity = engine.used, engine.capacity  # read without the lock: hints
        if not self.assisting or used <= capacity * HIGH_WATERMARK:
            return 0
        if not self._woken:  # past the high watermark: the thread demotes from now
            self._kick()
        if used <= capacity * ASSIST_WATERMARK:
            return 0
        if not self._stepping.acquire(blocking=False):
            return 0  # a step is under way; it makes the room
        try:
            self.assists += 1
            return self._step(False)
        finally:
            self._stepping.release()

    def step(self, force: bool = False, defer: bool = False) -> int:
        """One bounded round of housekeeping and demotion; the number of pages moved.

        With ``force`` the coldest pages are demoted even below the watermark.
        With ``defer`` (the thread) tier copies are not freed while gets of
        demoted pages are coming, unless more than :data:`BUSY_GARBAGE` wait.
        """
        with self._stepping:
            return self._step(force, defer)

    def _step(self, force: bool, defer: bool = False) -> int:
        engine = self.engine
        with self.lock:
            for number, tier in enumerate(self.tiers):
                forget_dropped(engine, number, tier.dropped())
            trim_demoted(engine, STEP_PAGES)
            garbage: list[tuple[int, int, int]] = []
            if not (defer and len(engine.tiering.garbage) <= BUSY_GARBAGE and self.busy()):
                garbage = take_garbage(engine)
            high = engine.capacity * HIGH_WATERMARK
            batch: list[Candidate] = []
            if force or engine.used > high:
                excess = engine.used - int(engine.capacity * LOW_WATERMARK)
                batch = pick_demotions(engine, STEP_PAGES, excess if not force else 1 << 62)
        self._free(garbage)
        self.steps += 1
        moved = 0
        for number, tier in enumerate(self.tiers):
            if not batch:
                break
            locs = tier.store([Demotion(c.tag, c.pid, c.blob, c.persistent) for c in batch])
            with self.lock:
                before = len(batch)
                batch = complete_demotions(engine, number, batch, locs)
                moved += before - len(batch)
        return moved

    def _free(self, garbage: list[tuple[int, int, int]]) -> None:
        by_tier: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
        for number, loc, tag in garbage:
            by_tier[number].append((loc, tag))
        for number, pages in by_tier.items():
            self.tiers[number].free(pages)

    def demote_all(self, max_steps: int = 1 << 20) -> int:
        """Demote the coldest pages until no tier takes more (tests and benchmarks)."""
        moved = 0
        for _ in range(max_steps):
            n = self.step(force=True)
            moved += n
            if n == 0:
                break
        return moved

    def settle(self, max_steps: int = 1 << 20) -> int:
        """Run steps now until usage is below the high watermark or nothing moves."""
        moved = 0
        for _ in range(max_steps):
            n = self.step()
            moved += n
            if n == 0:
                break
        return moved

    def _run(self) -> None:
        wake = self._wake
        while not self._stop.is_set():
            self.pending_cap = self.pending_limit()  # the capacity may have changed
            try:
                self.promote_pending(defer=True)
                moved = self.step(defer=True)
            except Exception:  # the demoter must outlive any one failure
                log.exception("demotion step failed")
                moved = 0
            if moved:
                continue
            with self.lock:
                busy = self.engine.used > self.engine.capacity * HIGH_WATERMARK
            # Asleep until the wait is over or a put or get wakes it (not woken by every
            # get: the gets of demoted pages run without it, see fetch).
            wake.clear()  # then the flag: a put or get that sees it False wakes this wait
            self._woken = busy  # past the watermark already: puts need not wake it
            wake.wait(REFUSED_WAIT if busy else IDLE_WAIT)

    # --- the rest ---------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Each tier's own figures, with the host's pages and bytes in it and fetch latency."""
        state = self.engine.tiering
        with self.lock:  # gets record fetches under it
            mine = [
                (state.pages[n], state.bytes[n], self.fetches[n], sorted(self.latency[n]))
                for n in range(len(self.tiers))
            ]
        out = []
        for tier, (pages, size, fetches, samples) in zip(self.tiers, mine, strict=True):
            figures = tier.stats()
            figures.update(
                host_pages=pages,
                host_bytes=size,
                fetches=fetches,
                fetch_p50_us=_percentile(samples, 0.50),
                fetch_p99_us=_percentile(samples, 0.99),
            )
            out.append(figures)
        return out

    def close(self) -> None:
        """Stop the thread and close every tier."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None  # promotions are done at once from now on
        self.promote_pending()
        for tier in self.tiers:
            tier.close()


def _percentile(samples: list[int], q: float) -> float | None:
    if not samples:
        return None
    return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000

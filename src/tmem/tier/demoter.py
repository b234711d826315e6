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

A get of a demoted page is finished by :meth:`TierSet.fetch`, synchronously,
under the host's lock: one load from the tier, then the engine's rules.  A
tier that cannot answer makes an ephemeral get miss and a persistent get
raise :class:`tmem.TierError` (the page stays where it is).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from tmem.engine import Engine
from tmem.engine.state import ClientState
from tmem.engine.tiering import (
    Candidate,
    Fetch,
    attach_tiers,
    complete_demotions,
    forget_dropped,
    note_failure,
    pick_demotions,
    promote,
    take_garbage,
    trim_demoted,
)
from tmem.errors import TierError
from tmem.tier.base import Demotion, Tier

log = logging.getLogger("tmem.tier")

#: Demotion starts when the RAM store passes this share of the capacity...
HIGH_WATERMARK = 0.85
#: ...and stops when usage is back down to this share.
LOW_WATERMARK = 0.70
#: Pages one step demotes at most (bounded work under the lock).
STEP_PAGES = 256
#: Seconds between looks at the watermark while idle, and after a step that moved nothing.
IDLE_WAIT = 0.005
REFUSED_WAIT = 0.5
#: Fetch latencies kept per tier for the percentiles in ``stats()``.
LATENCY_SAMPLES = 4096


class TierSet:
    """The tiers below one host's RAM store, in order, and the thread that feeds them."""

    def __init__(
        self, engine: Engine, lock: threading.Lock, tiers: Sequence[Tier], background: bool = True
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.tiers = list(tiers)
        attach_tiers(engine, [tier.index_bytes_per_page for tier in self.tiers])
        self.latency: list[collections.deque[int]] = [
            collections.deque(maxlen=LATENCY_SAMPLES) for _ in self.tiers
        ]
        self.fetches = [0] * len(self.tiers)
        self.steps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="tmem-demoter", daemon=True)
            self._thread.start()

    # --- promotion (called under the host's lock) ---------------------------------

    def fetch(self, client: ClientState, fetch: Fetch) -> bytes | None:
        """Finish a get of a demoted page: load it from its tier, apply the get's rules."""
        tier = self.tiers[fetch.tier]
        start = time.perf_counter_ns()
        try:
            blob = tier.load(fetch.loc, fetch.tag)
        except TierError:
            note_failure(self.engine, client, fetch)
            if fetch.pool.persistent:
                raise
            return None
        finally:
            self.latency[fetch.tier].append(time.perf_counter_ns() - start)
            self.fetches[fetch.tier] += 1
        if blob is None and fetch.pool.persistent:
            note_failure(self.engine, client, fetch)
            raise TierError(f"the {tier.name} tier has lost a persistent page")
        return promote(self.engine, client, fetch, blob)

    # --- demotion -------------------------------------------------------------------

    def step(self, force: bool = False) -> int:
        """One bounded round of housekeeping and demotion; the number of pages moved.

        With ``force`` the coldest pages are demoted even below the watermark.
        """
        engine = self.engine
        with self.lock:
            for number, tier in enumerate(self.tiers):
                forget_dropped(engine, number, tier.dropped())
            trim_demoted(engine, STEP_PAGES)
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
        while not self._stop.is_set():
            try:
                moved = self.step()
            except Exception:  # the demoter must outlive any one failure
                log.exception("demotion step failed")
                moved = 0
            if moved:
                continue
            with self.lock:
                busy = self.engine.used > self.engine.capacity * HIGH_WATERMARK
            self._stop.wait(REFUSED_WAIT if busy else IDLE_WAIT)

    # --- the rest ---------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Each tier's own figures, with the host's pages and bytes in it and fetch latency."""
        state = self.engine.tiering
        out = []
        for number, tier in enumerate(self.tiers):
            figures = tier.stats()
            samples = sorted(self.latency[number])
            figures.update(
                host_pages=state.pages[number],
                host_bytes=state.bytes[number],
                fetches=self.fetches[number],
                fetch_p50_us=_percentile(samples, 0.50),
                fetch_p99_us=_percentile(samples, 0.99),
            )
            out.append(figures)
        return out

    def close(self) -> None:
        """Stop the thread and close every tier."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for tier in self.tiers:
            tier.close()


def _percentile(samples: list[int], q: float) -> float | None:
    if not samples:
        return None
    return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000

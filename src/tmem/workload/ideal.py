"""What the same guests would read with ideally shared memory: trace-driven simulations.

No tmem call is made here.  The guests' page references are replayed in the
runner's schedule (the same delays and steps; within a step the running
guests take turns request by request, as their threads interleave) against
three arrangements of the same total memory, ``N * M`` private pages plus
``S = T / page_size`` spare pages:

* **global LRU**: one least-recently-used cache of ``N * M + S`` pages that
  every guest shares, with no per-guest split at all (the *ideal* the report
  measures every configuration against);
* **victim LRU**: each guest's own LRU cache of ``M`` pages, and behind them
  one shared LRU victim cache of ``S`` pages that takes what the private
  caches evict and gives a page back on a hit (exclusive, as cleancache and
  frontswap's exclusive gets are): what tmem would read with no metadata and
  one host-wide LRU;
* **static**: each guest's own LRU cache of ``M + S / N`` pages, which is
  what the ``static`` configuration does (a check of the simulation).

A *read* is what the measured configurations count: for cleancache a page
read that misses every cache (a disk read); for frontswap a reference to a
page that was used before and is not in memory (a swap read; a page's first
use needs no I/O).  Writes in cleancache go through to the file and leave a
full written page cached, as the frontend does.  A guest that has replayed
its slice leaves, and its pages leave every shared cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: The simulated arrangements, in report order; ``IDEAL`` is the one shares are measured against.
ARRANGEMENTS = ("global_lru", "victim_lru", "static")
IDEAL = "global_lru"


@dataclass(frozen=True)
class GuestRefs:
    """One guest's page references: request ``i`` touches ``counts[i]`` pages from
    ``starts[i]`` (dense page numbers), a write if ``writes[i]``; it starts once the
    others made ``delay`` page accesses each."""

    starts: Sequence[int]
    counts: Sequence[int]
    writes: Sequence[int]
    delay: int = 0


#: One event of the schedule: (guest, first page, page count, write); count -1: the guest leaves.
Event = tuple[int, int, int, bool]


def schedule(guests: Sequence[GuestRefs], step_pages: int) -> Iterator[Event]:
    """The runner's order of requests: steps of about ``step_pages`` page accesses per guest.

    A guest runs in step ``k`` once ``k * step_pages`` reaches its delay; in a
    step each running guest replays requests until it touched ``step_pages``
    pages, the guests taking turns request by request.  A guest whose slice
    ends leaves at the end of that step.
    """
    position = [0] * len(guests)
    left = [True] * len(guests)
    k = 0
    while any(left):
        budget = [0] * len(guests)
        running = [
            g
            for g, refs in enumerate(guests)
            if left[g] and k * step_pages >= refs.delay and position[g] < len(refs.starts)
        ]
        while running:
            still = []
            for g in running:
                refs, i = guests[g], position[g]
                yield g, refs.starts[i], refs.counts[i], bool(refs.writes[i])
                position[g] = i + 1
                budget[g] += refs.counts[i]
                if budget[g] < step_pages and position[g] < len(refs.starts):
                    still.append(g)
            running = still
        for g, refs in enumerate(guests):
            if left[g] and position[g] >= len(refs.starts):
                left[g] = False
                yield g, 0, -1, False
        k += 1


class _Lru:
    """An LRU cache of ``size`` pages keyed by (guest, page)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pages: OrderedDict[tuple[int, int], None] = OrderedDict()

    def hit(self, key: tuple[int, int]) -> bool:
        """True (and the page becomes most recent) if the page is here."""
        if key in self.pages:
            self.pages.move_to_end(key)
            return True
        return False

    def insert(self, key: tuple[int, int]) -> tuple[int, int] | None:
        """Add a page as most recent; return the page it pushed out, if any."""
        self.pages[key] = None
        if len(self.pages) > self.size:
            return self.pages.popitem(last=False)[0]
        return None

    def take(self, key: tuple[int, int]) -> bool:
        """Remove the page; True if it was here."""
        return self.pages.pop(key, 0) is None

    def leave(self, guest: int) -> None:
        """Drop every page of ``guest``."""
        for key in [k for k in self.pages if k[0] == guest]:
            del self.pages[key]


def simulate(
    guests: Sequence[GuestRefs],
    scenario: str,
    private_pages: int,
    spare_pages: int,
    arrangement: str,
    step_pages: int = 512,
) -> list[int]:
    """Reads (disk or swap) of each guest under ``arrangement`` (see the module's docstring)."""
    n = len(guests)
    if arrangement == "global_lru":
        caches = [_Lru(n * private_pages + spare_pages)] * n
        victim = None
    elif arrangement == "victim_lru":
        caches = [_Lru(private_pages) for _ in range(n)]
        victim = _Lru(spare_pages)
    elif arrangement == "static":
        caches = [_Lru(private_pages + spare_pages // n) for _ in range(n)]
        victim = None
    else:
        raise ValueError(f"unknown arrangement {arrangement!r}; choose from {ARRANGEMENTS}")
    swap = scenario == "frontswap"
    reads = [0] * n
    seen: list[set[int]] = [set() for _ in range(n)]  # frontswap: pages used before
    for g, first, count, write in schedule(guests, step_pages):
        cache = caches[g]
        if count < 0:
            cache.leave(g)
            if victim is not None:
                victim.leave(g)
            continue
        for page in range(first, first + count):
            key = (g, page)
            if write and not swap:
                # Write-through: a cached page is updated in place (its place kept);
                # otherwise the written page is cached and any victim copy is stale.
                if key in cache.pages:
                    continue
                if victim is not None:
                    victim.take(key)
            elif cache.hit(key):
                continue
            elif victim is not None and victim.take(key):
                pass  # a tmem hit
            elif not swap or page in seen[g]:
                reads[g] += 1
            if swap:
                seen[g].add(page)
            out = cache.insert(key)
            if out is not None and victim is not None:
                victim.insert(out)
    return reads


def simulate_all(
    guests: Sequence[GuestRefs],
    scenario: str,
    private_pages: int,
    spare_pages: int,
    step_pages: int = 512,
) -> dict[str, list[int]]:
    """Each guest's reads under every arrangement of :data:`ARRANGEMENTS`."""
    return {
        name: simulate(guests, scenario, private_pages, spare_pages, name, step_pages)
        for name in ARRANGEMENTS
    }


def ideal_share(static_reads: int, config_reads: int, ideal_reads: int) -> float | None:
    """``(static - config) / (static - ideal)``: the share of the ideal's gain over static
    that a configuration captures (1.0 = all of it; above 1, more); None when the
    ideal saves nothing over static."""
    gain = static_reads - ideal_reads
    if gain <= 0:
        return None
    return (static_reads - config_reads) / gain

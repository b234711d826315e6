"""Victim-cache policies compared on the shipped mixes by trace-driven simulation.

How the host's choices were made (docs/workload.md, "Choosing the policy"):
the mixes' page references, in the workload's schedule
(:func:`tmem.workload.ideal.schedule`), replayed against private LRU caches
of ``M`` pages with one exclusive tmem cache of ``T / 4096`` pages behind
them (no metadata, no compression), under

* the client choice: ``share`` (most pages per weight loses, the older
  policy), ``global`` (the globally oldest page: one LRU),
  ``utility`` (floors of ``reserve`` of the capacity, then the fewest
  decayed ghost hits; ghosts ``ghost`` times the capacity per client);
* the order within a client: ``lru``, ``mru`` (the newest page goes, the
  classic answer to loops), ``s3fifo`` (S3-FIFO for an exclusive cache: new
  pages in a small FIFO of a tenth, pages found in the ghost list in the
  main FIFO), ``bip`` (the bimodal insertion of Qureshi et al., ISCA '07: a
  new page goes in at the evicting end, one in 32 at the other, against
  loops larger than the cache), ``reuse`` (bimodal insertion that knows
  which pages were hit: a page hit in tmem lately -- the signal an
  exclusive cache keeps, as in Gaur et al.'s trip counts, ISCA '11 -- goes
  in at the top, a new page at the evicting end, one in 32 at the top),
  ``adaptive`` (per client, set-dueling of ``lru`` and ``reuse`` as in
  DIP: two shadow simulations of the client's keys, each as large as what
  the client holds, count their misses (halved as utility is); ``reuse``
  is used while its shadow misses ``margin`` fewer than ``lru``'s, and
  back to ``lru`` when ``lru``'s misses ``margin`` fewer).  A page counts
  as hit lately while it is among the client's last ``hits`` times the
  capacity's pages hit.

Candidates for scan and loop resistance through frequency, and for the
client choice (docs/workload.md, "Frequency"):

* ``ratio``: the client choice as the engine makes it
  (:func:`tmem.engine.victims.least_useful`: above the floors, most pages
  per ``1 + utility / damp``); ``hit_weight`` / ``reuse_weight`` also count
  a hit in tmem (while the client uses the reuse order) as utility;
* ``sample`` (``lfuK``): frequency-aware retention -- of the client's ``K``
  pages next to go, the one with the fewest gets lately goes (a get, hit or
  miss, is a reference the guest's cache missed: reuse beyond it); counts
  exact per handle, or in a count-min sketch of ``sketch`` counters a page
  (``cmS``, 4-bit, conservative update), all halved each ``window`` times
  the capacity's gets (TinyLFU's reset, Einziger et al., 2017);
* ``admit="tinylfu"``: a put is refused when its handle has had fewer gets
  than the page it would displace (TinyLFU admission against the victim).

Prints disk reads (cleancache) per mix and policy; lower is better.  With
``--opt``, also Belady's OPT: one clairvoyant cache of all the memory (private
and spare) that evicts the page used furthest in the future and keeps no page
never used again, in both scenarios -- a bound no policy can beat -- and, in
cleancache, the clairvoyant tmem behind the guests' own LRU caches
(:func:`victim_opt`): the bound for any host policy with those caches.  With
``--engine``, also the same references replayed through real embedded hosts
(``tmem.Host`` of the mix's spare bytes, raw pages, metadata charged) under
each order within a client, one thread, so the engine's order is checked
against the simulation with none of the benchmark's thread interleaving; in
cleancache also with the benchmark's own page contents (the shipped corpus),
uncompressed and, with ``--compress lz4`` / ``zstd``, compressed.

``--scenario frontswap`` does the same for swapped anonymous memory: each
guest's resident pages (LRU) put every page they page out into tmem and get
each page faulted back (exclusive); the simulated policies stand for how the
host could split persistent memory and order each client's pages, and
``--engine`` runs real :class:`~tmem.frontends.Frontswap` areas (writeback
order and host order both ``ORDER``, the page written back chosen by each of
frontswap's ``eviction`` ways, self-shrinking each step) on real hosts and
prints swap reads.

    python bench/policy_sim.py [--mix default ...] [--scenario S] [--opt] [--engine]
        [--compress lz4 --compress zstd]
"""

from __future__ import annotations

import argparse
import heapq
import random
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tmem
from tmem.engine.frequency import EVICTIONS
from tmem.engine.insertion import ORDERS
from tmem.frontends import Frontswap
from tmem.frontends.frontswap import EVICTIONS as WRITEBACK_EVICTIONS
from tmem.units import parse_size
from tmem.workload.config import GuestSpec
from tmem.workload.content import ContentMap
from tmem.workload.guest import GuestPages
from tmem.workload.ideal import GuestRefs, schedule
from tmem.workload.mixes import MIXES
from tmem.workload.traces import load_trace


@dataclass(frozen=True)
class Policy:
    """A client choice, an order within a client, and the utility policy's knobs."""

    choice: str = "share"
    order: str = "lru"
    reserve: float = 0.0
    ghost: float = 0.05
    margin: float = 0.1
    hits: float = 0.25
    sample: int = 0  # > 0: of the client's oldest ``sample`` pages, the least frequent goes
    admit: str = ""  # "tinylfu": a put less frequent than the page it would displace is refused
    window: float = 10.0  # frequencies are halved each ``window`` times the capacity's gets
    hit_weight: float = 0.0  # a hit in tmem counts this much utility (a ghost hit counts 1)
    reuse_weight: float = 0.0  # the same, for a hit while the client uses the reuse order
    damp: float = 1.0  # ratio: memory in proportion to 1 + utility / damp
    sketch: int = 0  # > 0: frequencies in a count-min sketch of this many counters a page


POLICIES = {
    "share/lru (older policy)": Policy(),
    "global/lru": Policy("global"),
    "utility r0.5 g0.05/lru (default)": Policy("utility", reserve=0.5, ghost=0.05),
    "utility r0.5 g1/lru": Policy("utility", reserve=0.5, ghost=1.0),
    "utility r0.75 g0.05/lru": Policy("utility", reserve=0.75, ghost=0.05),
    "share/mru": Policy(order="mru"),
    "share/s3fifo": Policy(order="s3fifo"),
    "share/bip": Policy(order="bip"),
    "utility r0.5 g0.05/bip": Policy("utility", order="bip", reserve=0.5, ghost=0.05),
    "share/reuse": Policy(order="reuse"),
    "share/adaptive": Policy(order="adaptive"),
    "utility r0.5 g0.05/reuse": Policy("utility", order="reuse", reserve=0.5),
    "utility r0.5 g0.05/adaptive": Policy("utility", order="adaptive", reserve=0.5),
    "utility r0.5 g0.05/adaptive m0": Policy("utility", order="adaptive", reserve=0.5, margin=0),
    "utility r0.75 g0.05/adaptive": Policy("utility", order="adaptive", reserve=0.75),
    "ratio r0.5/adaptive (the engine's utility)": Policy("ratio", order="adaptive", reserve=0.5),
    "ratio r0.5/adaptive d16": Policy("ratio", order="adaptive", reserve=0.5, damp=16),
    "ratio r0.5/adaptive h1": Policy("ratio", order="adaptive", reserve=0.5, hit_weight=1),
    "ratio r0.5/adaptive rh1": Policy("ratio", order="adaptive", reserve=0.5, reuse_weight=1),
    "ratio r0.5 g1/adaptive": Policy("ratio", order="adaptive", reserve=0.5, ghost=1.0),
    "ratio r0.5/adaptive tinylfu": Policy(
        "ratio", order="adaptive", reserve=0.5, admit="tinylfu", sketch=8
    ),
    "ratio r0.5/lfu64": Policy("ratio", reserve=0.5, sample=64),
    "ratio r0.5/adaptive lfu64": Policy("ratio", order="adaptive", reserve=0.5, sample=64),
    "ratio r0.5/adaptive lfu32 cm8": Policy(
        "ratio", order="adaptive", reserve=0.5, sample=32, sketch=8
    ),
    "ratio r0.5/adaptive lfu64 cm8": Policy(
        "ratio", order="adaptive", reserve=0.5, sample=64, sketch=8
    ),
    "ratio r0.5/adaptive lfu128 cm8": Policy(
        "ratio", order="adaptive", reserve=0.5, sample=128, sketch=8
    ),
    "share/adaptive lfu64": Policy(order="adaptive", sample=64),
}

#: A new page goes in at the top one time in this many (bimodal insertion).
BIMODAL = 32


class Sim:
    """One exclusive tmem cache of ``size`` pages shared by ``n`` clients."""

    def __init__(self, n: int, size: int, policy: Policy) -> None:
        self.size, self.policy, self.used, self.clock, self.evictions = size, policy, 0, 0, 0
        self.main: list[OrderedDict[int, int]] = [OrderedDict() for _ in range(n)]
        self.small: list[OrderedDict[int, int]] = [OrderedDict() for _ in range(n)]
        self.ghosts: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n)]
        self.utility = [0.0] * n
        self.active = [False] * n
        self.ghost_limit = max(1, int(size * policy.ghost))
        self.random = random.Random(0)
        self.hits: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n)]
        # adaptive: [lru, reuse] shadows of keys, their decayed misses, the order in use
        self.shadows = [(OrderedDict(), OrderedDict()) for _ in range(n)]
        self.misses = [[0.0, 0.0] for _ in range(n)]
        self.reusing = [False] * n
        self.new = [[0, 0] for _ in range(n)]  # new pages under reuse: in tmem, in the shadow
        # gets seen per handle (guest misses: reuse past the guest's cache), aged by halving
        self.freq: list[dict[int, int]] = [{} for _ in range(n)]
        self.gets = 0
        self.refused = 0
        width = 1
        while width < policy.sketch * max(1, size):
            width *= 2
        self.mask = width - 1
        self.rows = [[0] * width for _ in range(4 if policy.sketch else 0)]

    def held(self, c: int) -> int:
        return len(self.main[c]) + len(self.small[c])

    def victim(self, putter: int) -> int:
        p, n = self.policy, len(self.main)
        floor = p.reserve * self.size / max(1, sum(self.active))
        held = [c for c in range(n) if self.held(c)]
        above = [c for c in held if self.held(c) + (c == putter) > floor] or held
        if p.choice == "global":
            return min(held, key=lambda c: min(q[next(iter(q))] for q in (self.main[c],
                       self.small[c]) if q))  # fmt: skip
        if p.choice == "utility":
            return min(above, key=lambda c: (self.utility[c], -self.held(c)))
        if p.choice == "ratio":  # as the engine's least_useful: most held per 1 + utility
            return max(
                above, key=lambda c: (self.held(c) + (c == putter)) / (1 + self.utility[c] / p.damp)
            )
        return max(held, key=lambda c: self.held(c) + (c == putter))

    def evict(self, c: int) -> None:
        small, main = self.small[c], self.main[c]
        order = self.policy.order
        if small and (len(small) > 0.1 * self.held(c) or not main):
            key, _ = small.popitem(last=False)
        elif self.policy.sample:
            key = self.coldest(c)
            del main[key]
        else:
            key, _ = main.popitem(last=order == "mru")
        self.used -= 1
        self.ghosts[c][key] = None
        if len(self.ghosts[c]) > self.ghost_limit:
            self.ghosts[c].popitem(last=False)
        self.evictions += 1
        if self.evictions % self.size == 0:
            self.utility = [u / 2 for u in self.utility]
            self.misses = [[a / 2, b / 2] for a, b in self.misses]

    def frequency(self, c: int, key: int) -> int:
        if not self.policy.sketch:
            return self.freq[c].get(key, 0)
        h = hash((c, key))
        return min(row[(h >> (8 * i)) & self.mask] for i, row in enumerate(self.rows))

    def coldest(self, c: int) -> int:
        """Of the ``sample`` least recent pages of ``c``, the least frequent (oldest on ties)."""
        best, best_f = -1, 1 << 60
        for i, key in enumerate(self.main[c]):
            if i >= self.policy.sample:
                break
            f = self.frequency(c, key)
            if f < best_f:
                best, best_f = key, f
        return best

    def count(self, c: int, key: int) -> None:
        """A get of ``key``: one more use seen; every count halved once per window."""
        if self.policy.sketch:
            h = hash((c, key))
            cells = [(row, (h >> (8 * i)) & self.mask) for i, row in enumerate(self.rows)]
            low = min(row[j] for row, j in cells)
            for row, j in cells:  # conservative update, 4-bit counters
                if row[j] == low and low < 15:
                    row[j] += 1
        else:
            freq = self.freq[c]
            freq[key] = freq.get(key, 0) + 1
        self.gets += 1
        if self.gets >= self.policy.window * self.size:
            self.gets = 0
            for row in self.rows:
                for j in range(len(row)):
                    row[j] >>= 1
            for f in self.freq:
                for k in list(f):
                    f[k] >>= 1
                    if not f[k]:
                        del f[k]

    def low(self, c: int, key: int, reuse: bool, shadow: bool = False) -> bool:
        """True if ``key`` goes in at the evicting end (``reuse``: the reuse order; one new
        page in BIMODAL goes in at the top, counted apart in the shadow, as the engine does)."""
        if self.policy.order == "bip":
            return self.random.random() >= 1 / BIMODAL
        if reuse and key not in self.hits[c]:
            self.new[c][shadow] += 1
            return self.new[c][shadow] % BIMODAL != 0
        return False

    def put(self, c: int, key: int) -> None:
        if self.size <= 0:
            return
        self.clock += 1
        order = self.policy.order
        if order == "adaptive":
            size = self.held(c) + 1
            for shadow, reuse in zip(self.shadows[c], (False, True), strict=True):
                shadow[key] = None
                if self.low(c, key, reuse, shadow=True):
                    shadow.move_to_end(key, last=False)
                while len(shadow) > size:
                    shadow.popitem(last=False)
        if self.used >= self.size:
            v = self.victim(c)
            if self.policy.admit == "tinylfu" and self.main[v]:
                vkey = self.coldest(v) if self.policy.sample else next(iter(self.main[v]))
                if self.frequency(c, key) < self.frequency(v, vkey):
                    self.refused += 1
                    return
            self.evict(v)
        if order == "s3fifo" and key not in self.ghosts[c]:
            self.small[c][key] = self.clock
        else:
            self.main[c][key] = self.clock
            reuse = order == "reuse" or (order == "adaptive" and self.reusing[c])
            if self.low(c, key, reuse):
                self.main[c].move_to_end(key, last=False)  # next to go
        self.used += 1

    def duel(self, c: int, key: int) -> None:
        """Count the shadows' misses on a get of ``key``; switch order past the margin."""
        misses = self.misses[c]
        for i, shadow in enumerate(self.shadows[c]):
            if shadow.pop(key, 1) is not None:
                misses[i] += 1
        lru, reuse = misses
        if reuse < lru * (1 - self.policy.margin):
            self.reusing[c] = True
        elif lru < reuse * (1 - self.policy.margin):
            self.reusing[c] = False

    def get(self, c: int, key: int) -> bool:
        if self.policy.sample or self.policy.admit:
            self.count(c, key)
        if self.policy.order == "adaptive":
            self.duel(c, key)
        for queue in (self.small[c], self.main[c]):
            if key in queue:
                del queue[key]
                self.used -= 1
                p = self.policy
                self.utility[c] += p.reuse_weight if self.reusing[c] else p.hit_weight
                hits = self.hits[c]
                hits[key] = None
                hits.move_to_end(key)
                if len(hits) > max(1, self.size * self.policy.hits):
                    hits.popitem(last=False)
                return True
        if key in self.ghosts[c]:
            del self.ghosts[c][key]
            self.utility[c] += 1
        return False

    def forget(self, c: int, key: int) -> None:
        for queue in (self.small[c], self.main[c]):
            if queue.pop(key, None) is not None:
                self.used -= 1

    def leave(self, c: int) -> None:
        self.used -= self.held(c)
        for store in (self.main, self.small, self.ghosts, self.hits, self.freq):
            store[c].clear()
        for shadow in self.shadows[c]:
            shadow.clear()
        self.utility[c], self.active[c] = 0.0, False
        self.misses[c], self.reusing[c] = [0.0, 0.0], False


def cleancache_calls(guests: list[GuestRefs], private: int) -> Iterator[tuple[int, str, int]]:
    """The calls each guest's private LRU page cache of ``private`` pages makes on the
    shared schedule, as ``(guest, call, page)``: ``start`` (the guest runs a step),
    ``leave``, ``flush`` (a write to a page not cached), ``get`` (a miss; the page is
    cached whatever the answer) and ``put`` (the page its cache evicted)."""
    caches: list[OrderedDict[int, None]] = [OrderedDict() for _ in guests]
    for g, first, count, write in schedule(guests, 512):
        yield g, "start", 0
        if count < 0:
            caches[g].clear()
            yield g, "leave", 0
            continue
        cache = caches[g]
        for page in range(first, first + count):
            if write:
                if page in cache:
                    continue
                yield g, "flush", page
            elif page in cache:
                cache.move_to_end(page)
                continue
            else:
                yield g, "get", page
            cache[page] = None
            if len(cache) > private:
                yield g, "put", cache.popitem(last=False)[0]


def frontswap_calls(guests: list[GuestRefs], private: int) -> Iterator[tuple[int, str, int]]:
    """The calls each guest's ``private`` resident pages (LRU) make on the shared
    schedule, as :func:`cleancache_calls` says them: ``get`` (a fault of a page used
    before: from tmem or the swap file) and ``put`` (the page paged out; clean or not,
    it goes to tmem, as a store or a clean offer)."""
    resident: list[OrderedDict[int, None]] = [OrderedDict() for _ in guests]
    seen: list[set[int]] = [set() for _ in guests]
    for g, first, count, _write in schedule(guests, 512):
        yield g, "start", 0
        if count < 0:
            resident[g].clear()
            yield g, "leave", 0
            continue
        pages = resident[g]
        for page in range(first, first + count):
            if page in pages:
                pages.move_to_end(page)
                continue
            if page in seen[g]:
                yield g, "get", page
            seen[g].add(page)
            pages[page] = None
            if len(pages) > private:
                yield g, "put", pages.popitem(last=False)[0]


def simulate(
    guests: list[GuestRefs], private: int, spare: int, policy: Policy, scenario: str = "cleancache"
) -> int:
    """Disk (cleancache) or swap (frontswap) reads of all guests under ``policy``."""
    sim = Sim(len(guests), spare, policy)
    reads = 0
    calls = frontswap_calls if scenario == "frontswap" else cleancache_calls
    for g, call, page in calls(guests, private):
        if call == "start":
            sim.active[g] = True
        elif call == "leave":
            sim.leave(g)
        elif call == "flush":
            sim.forget(g, page)
        elif call == "get":
            reads += not sim.get(g, page)
        else:
            sim.put(g, page)
    return reads


def replay_engine(
    guests: list[GuestRefs],
    private: int,
    spare_bytes: int,
    order: str,
    compress: str | None = None,
    content: Callable[[int, int, int], bytes] | None = None,
    eviction: str = "lru",
) -> int:
    """Cleancache disk reads of all guests with a real host of ``spare_bytes`` under
    ``order``, compressing with ``compress`` the bytes ``content(guest, page, version)``
    gives (zeros without it), evicting by ``eviction``."""
    host = tmem.Host(spare_bytes, compress=compress, dedup=None, order=order, eviction=eviction)
    clients: dict[int, tuple[Any, int]] = {}
    versions: dict[tuple[int, int], int] = {}
    page_data, reads = bytes(4096), 0
    for g, call, page in cleancache_calls(guests, private):
        if call == "start":
            if g not in clients:
                client = host.connect(f"guest{g}")
                clients[g] = (client, client.new_pool())
            continue
        client, pool = clients[g]
        if call == "leave":
            client.close()
        elif call == "flush":
            versions[g, page] = versions.get((g, page), 0) + 1
            client.flush_page(pool, 1, page)
        elif call == "get":
            reads += client.get_page(pool, 1, page) is None
        else:
            data = content(g, page, versions.get((g, page), 0)) if content else page_data
            client.put_page(pool, 1, page, data)
    return reads


def mix_content(layouts: list[GuestPages]) -> Callable[[int, int, int], bytes]:
    """The benchmark's page contents for the guests of ``layouts``: ``(guest, page,
    version) -> bytes`` from the shipped corpus, as :class:`~tmem.workload.content.ContentMap`
    gives them to the workload's guests."""
    pages: dict[str, set[int]] = {}
    for layout in layouts:
        pages.setdefault(layout.trace.name, set()).update(layout.pages)
    content = ContentMap.build(pages)

    def bytes_of(g: int, page: int, version: int) -> bytes:
        layout = layouts[g]
        return content.page(layout.trace.name, layout.pages[page], version)

    return bytes_of


def frontswap_steps(
    guests: list[GuestRefs], step_pages: int = 512
) -> Iterator[tuple[int, list[tuple[int, int, bool]] | None]]:
    """The runner's steps in one thread: ``(guest, requests)`` for each running guest's
    step of about ``step_pages`` page accesses, in turn, and ``(guest, None)`` when a
    guest's slice ends."""
    position, left, k = [0] * len(guests), [True] * len(guests), 0
    while any(left):
        for g, refs in enumerate(guests):
            if not left[g] or k * step_pages < refs.delay:
                continue
            requests, touched = [], 0
            while touched < step_pages and position[g] < len(refs.starts):
                i = position[g]
                requests.append((refs.starts[i], refs.counts[i], bool(refs.writes[i])))
                touched += refs.counts[i]
                position[g] = i + 1
            yield g, requests
            if position[g] >= len(refs.starts):
                left[g] = False
                yield g, None
        k += 1


def replay_frontswap(
    guests: list[GuestRefs], private: int, spare_bytes: int, order: str, eviction: str = "lru"
) -> int:
    """Swap reads of all guests with a real host of ``spare_bytes`` and real
    :class:`~tmem.frontends.Frontswap` areas with writeback order ``order`` (host order
    the same) and ``eviction``, as the workload's ``SwapGuest`` does: ``private``
    resident pages (LRU), exclusive loads, clean pages offered again, one
    self-shrinking interval a step."""
    host = tmem.Host(spare_bytes, compress=None, dedup=None, order=order)
    data, reads = bytes(4096), 0
    areas: dict[int, tuple[Frontswap, OrderedDict[int, None], set[int]]] = {}
    with tempfile.TemporaryDirectory(prefix="tmem-policy-sim-") as tmp:
        for g, requests in frontswap_steps(guests):
            if g not in areas:
                slots = max(s + c for s, c in zip(guests[g].starts, guests[g].counts, strict=True))
                swap = Frontswap(
                    host.connect(f"guest{g}"), f"{tmp}/{g}", slots, order=order, eviction=eviction
                )
                areas[g] = swap, OrderedDict(), set()
            swap, resident, swapped = areas[g]
            if requests is None:
                swap.close()
                continue
            for first, count, write in requests:
                for page in range(first, first + count):
                    if page in resident:
                        resident.move_to_end(page)
                    elif page in swapped:
                        loads = swap.stats()["loads"]
                        swap.load(page)
                        if swap.stats()["loads"] == loads:
                            reads += 1
                        elif swap.holds_in_file(page):
                            swap.drop_from_tmem(page)
                        else:
                            swap.invalidate(page)
                            swapped.discard(page)
                    if page not in resident:
                        resident[page] = None
                        if len(resident) > private:
                            victim = resident.popitem(last=False)[0]
                            if victim in swapped:
                                swap.offer(victim, data)
                            else:
                                swap.store(victim, data)
                                swapped.add(victim)
                    if write and page in swapped:
                        swapped.discard(page)
                        swap.invalidate(page)
            swap.selfshrink_step()
    return reads


def belady(guests: list[GuestRefs], size: int, scenario: str) -> int:
    """Reads of one clairvoyant cache of ``size`` pages (Belady's OPT, with bypass)."""
    events = [
        ((g, page), write)
        for g, first, count, write in schedule(guests, 512)
        for page in range(first, first + count)
    ]  # a guest's leaving needs no event: its pages are never used again
    never = len(events)
    following = [never] * len(events)
    last: dict[tuple[int, int], int] = {}
    for i in range(len(events) - 1, -1, -1):
        following[i] = last.get(events[i][0], never)
        last[events[i][0]] = i
    swap = scenario == "frontswap"
    cache: dict[tuple[int, int], int] = {}  # page -> its next use
    heap: list[tuple[int, tuple[int, int]]] = []  # (-next use, page); stale entries skipped
    seen: set[tuple[int, int]] = set()
    reads = 0
    for i, (key, write) in enumerate(events):
        if key not in cache and not (write and not swap) and (not swap or key in seen):
            reads += 1  # cleancache writes go through; frontswap's first touch is free
        seen.add(key)
        cache.pop(key, None)
        if following[i] == never:
            continue
        cache[key] = following[i]
        heapq.heappush(heap, (-following[i], key))
        while len(cache) > size:
            use, victim = heapq.heappop(heap)
            if cache.get(victim) == -use:
                del cache[victim]
    return reads


def victim_opt(guests: list[GuestRefs], private: int, spare: int) -> int:
    """Disk reads with a clairvoyant exclusive tmem of ``spare`` pages behind the guests'
    own LRU caches of ``private`` pages (cleancache): the least any host policy can read
    with these caches, no metadata and no compression.

    The guests' caches make the same calls whatever tmem answers, so each put is an
    interval from the put to the page's next get (none if a write or the guest's
    leaving comes first), a hit only if tmem holds the page all along; keeping the
    most intervals with at most ``spare`` at once is optimal by dropping, whenever
    one too many is held, the one that ends last (the interval scheduling greedy,
    Belady's rule here).
    """
    calls = list(cleancache_calls(guests, private))
    never = len(calls)
    ends = [never] * never
    following: dict[tuple[int, int], int] = {}  # a page's next get, seen backwards
    for i in range(never - 1, -1, -1):
        g, call, page = calls[i]
        if call == "get":
            following[g, page] = i
        elif call == "flush":
            following.pop((g, page), None)
        elif call == "leave":
            following = {key: at for key, at in following.items() if key[0] != g}
        elif call == "put":
            ends[i] = following.pop((g, page), never)
    held: dict[tuple[int, int], int] = {}  # page -> the get that ends its interval
    heap: list[tuple[int, tuple[int, int]]] = []  # (-end, page); stale entries skipped
    reads = 0
    for i, (g, call, page) in enumerate(calls):
        if call == "get":
            if held.get((g, page)) == i:
                del held[g, page]
            else:
                reads += 1
        elif call == "put" and ends[i] < never:
            held[g, page] = ends[i]
            heapq.heappush(heap, (-ends[i], (g, page)))
            while len(held) > spare:
                end, victim = heapq.heappop(heap)
                if held.get(victim) == -end:
                    del held[victim]
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", action="append", choices=list(MIXES))
    parser.add_argument("--opt", action="store_true", help="also Belady's OPT (a bound)")
    parser.add_argument(
        "--policy", action="append", help="only the policies whose label contains this"
    )
    parser.add_argument("--engine", action="store_true", help="also real hosts, per order")
    parser.add_argument("--scenario", choices=("cleancache", "frontswap"), default="cleancache")
    parser.add_argument(
        "--compress",
        action="append",
        choices=("lz4", "zstd"),
        help="with --engine in cleancache: also hosts that compress the benchmark's pages",
    )
    args = parser.parse_args()
    for name in args.mix or list(MIXES):
        mix = MIXES[name]
        guests, layouts = [], []
        for text in mix.guests:
            spec = GuestSpec.parse(text)
            trace = load_trace(spec.trace).slice(spec.start, spec.count)
            layout = GuestPages.of(trace)
            layouts.append(layout)
            guests.append(GuestRefs(layout.starts, trace.counts, trace.writes, spec.delay))
        spare = parse_size(mix.spare) // 4096
        for label, policy in POLICIES.items():
            if args.policy and not any(part in label for part in args.policy):
                continue
            reads = simulate(guests, mix.private_pages, spare, policy, args.scenario)
            print(f"{name}\t{label}\t{reads}", flush=True)
        if args.engine and args.scenario == "frontswap":
            for order in ORDERS:
                for writeback in WRITEBACK_EVICTIONS:
                    reads = replay_frontswap(
                        guests, mix.private_pages, parse_size(mix.spare), order, writeback
                    )
                    label = f"engine: utility r0.5 g0.05/{order}, writeback {writeback}"
                    print(f"{name}\t{label}\t{reads}", flush=True)
        elif args.engine:
            for order in ORDERS:
                reads = replay_engine(guests, mix.private_pages, parse_size(mix.spare), order)
                print(f"{name}\tengine: utility r0.5 g0.05/{order}\t{reads}", flush=True)
            if args.scenario == "cleancache":
                content = mix_content(layouts)
                for eviction in EVICTIONS:
                    for codec in [None, *(args.compress or ())]:
                        reads = replay_engine(
                            guests,
                            mix.private_pages,
                            parse_size(mix.spare),
                            "adaptive",
                            codec,
                            content,
                            eviction,
                        )
                        label = f"the benchmark's pages: {codec or 'no compression'}, {eviction}"
                        print(f"{name}\tengine, {label}\t{reads}", flush=True)
        if args.opt:
            size = len(guests) * mix.private_pages + spare
            for scenario in ("cleancache", "frontswap"):
                reads = belady(guests, size, scenario)
                print(f"{name}\tOPT, one cache of all memory ({scenario})\t{reads}", flush=True)
            reads = victim_opt(guests, mix.private_pages, spare)
            print(f"{name}\tOPT tmem behind the guests' LRU caches (cleancache)\t{reads}")


if __name__ == "__main__":
    main()

"""Pages below RAM as the engine sees them: versions, demotion, promotion; no I/O.

The host moves bytes between its RAM store and its tiers; the engine decides
which pages go, records where each one is, and keeps every rule of the
contract reaching them.  The steps, each called under the host's lock:

1. :func:`pick_demotions` chooses the coldest pages (the oldest persistent
   pages in put order, and the least recently used ephemeral pages of the
   clients most over their weighted share) and exports them from the store.
   Nothing changes yet: the pages stay in RAM and stay valid.
2. The host writes them to a tier, outside the lock.
3. :func:`complete_demotions` moves each page the tier took, *if it is still
   the same version*: its RAM copy is freed and the page records the tier and
   location.  A page flushed or overwritten meanwhile is not moved; its tier
   copy goes on the garbage list for the host to free.
4. A get of a demoted page returns a :class:`Fetch` instead of bytes; the host
   loads the page from its tier outside the lock, and under it again checks
   that the page is :func:`unchanged` (else the get is asked again: a put or
   flush that ran meanwhile wins), applies the get's rules with
   :func:`finish_get` (a private ephemeral get takes the page) and brings
   the page back to RAM with :func:`bring_back` when it fits without
   evicting anything (at once, or soon after in the background).

Accounting: a demoted page is charged nothing in RAM (``cost`` 0: eviction
weighs RAM, which it no longer holds); its bytes in the tier are counted per
client (``tier_pages``, ``tier_bytes``) and against the client's cap.  The
host's usage still counts what it really holds for it: the page's
:data:`PAGE_METADATA_BYTES` and the tier's index bytes per page.  Demoted
ephemeral pages leave their owner's LRU list and sit on one list in demotion
order, from which :func:`trim_demoted` evicts the oldest when their metadata
grows past a share of the capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tmem.engine.ledger import PAGE_METADATA_BYTES
from tmem.store.export import decode_export

if TYPE_CHECKING:
    from tmem.engine.core import Engine
    from tmem.engine.pages import PageTable
    from tmem.engine.state import ClientState, Pool

#: Demoted ephemeral pages' metadata may take this share of the capacity at most.
DEMOTEDPAGE_METADATA_BYTES_SHARE = 4  # a quarter


class TierState:
    """What the engine keeps about tiers: versions, lists, counts, garbage."""

    def __init__(self, table: PageTable) -> None:
        self.version = 0  # the last version handed out
        self.index_bytes: list[int] = []  # per tier: RAM bytes of its index per page
        self.cold = table.new_list()  # persistent pages in RAM, in put order
        self.demoted_eph = table.new_list()  # demoted ephemeral pages, in demotion order
        self.meta_bytes = 0  # RAM held for demoted pages (metadata and tier indexes)
        self.tier_index = 0  # of which the tiers' indexes (the engine's metadata is per page)
        self.pages: list[int] = []  # per tier
        self.bytes: list[int] = []  # per tier: bytes the tier holds for this host
        self.garbage: list[tuple[int, int, int]] = []  # (tier, loc, version) to free
        self.counters = dict.fromkeys(
            ("demotions", "promotions", "tier_hits", "tier_lost", "tier_failures",
             "tier_dropped", "demotions_refused", "demotions_stale"), 0)  # fmt: skip

    def next_version(self) -> int:
        """A version no page has had before."""
        self.version += 1
        return self.version

    def forget(self, table: PageTable, pid: int, owner: ClientState) -> None:
        """A demoted page goes (flush, eviction, destroy, promotion): undo its counts.

        Its tier copy goes on the garbage list, for the host to free.
        """
        tier = table.tier[pid] - 1
        size = table.tlen[pid]
        self.garbage.append((tier, table.ref[pid], table.ver[pid]))
        self.pages[tier] -= 1
        self.bytes[tier] -= size
        self.meta_bytes -= PAGE_METADATA_BYTES + self.index_bytes[tier]
        self.tier_index -= self.index_bytes[tier]
        owner.tier_pages -= 1
        owner.tier_bytes -= size
        table.tier[pid] = 0

    def reassign(self, table: PageTable, pid: int, old: ClientState, new: ClientState) -> None:
        """A shared pool changes owner: its demoted page's tier bytes go with it."""
        size = table.tlen[pid]
        old.tier_pages -= 1
        old.tier_bytes -= size
        new.tier_pages += 1
        new.tier_bytes += size


class Fetch:
    """What :meth:`Engine.get` returns for a demoted page: load it, then :func:`promote`."""

    __slots__ = ("pid", "pool", "tier", "loc", "tag")

    def __init__(self, table: PageTable, pid: int, pool: Pool) -> None:
        self.pid = pid
        self.pool = pool
        self.tier = table.tier[pid] - 1
        self.loc = table.ref[pid]
        self.tag = table.ver[pid]


@dataclass(slots=True)
class Candidate:
    """A page chosen for demotion, exported from the store."""

    pid: int
    tag: int
    persistent: bool
    blob: bytes


def attach_tiers(engine: Engine, index_bytes: list[int]) -> None:
    """Give the engine its tiers (by the RAM their index takes per page), in order."""
    state = engine.tiering
    state.index_bytes = list(index_bytes)
    state.pages = [0] * len(index_bytes)
    state.bytes = [0] * len(index_bytes)


def pick_demotions(engine: Engine, max_pages: int, max_bytes: int) -> list[Candidate]:
    """Up to ``max_pages`` of the coldest pages in RAM, about ``max_bytes`` of RAM in all.

    Half are taken from the oldest persistent pages and half from the least
    recently used ephemeral pages of the clients most over their weighted
    share; if one kind runs short the other makes up the count.
    """
    table, store = engine.table, engine.store
    out: list[Candidate] = []
    freed = 0
    persistent = _oldest(table, engine.tiering.cold, max_pages)
    ephemeral: list[int] = []
    for client in sorted(engine.clients.values(), key=lambda c: -c.eph_bytes / c.weight):
        if len(ephemeral) >= max_pages:
            break
        ephemeral += _oldest(table, client.lru, max_pages - len(ephemeral))
    half = max(1, max_pages // 2)
    take_p = min(len(persistent), max(half, max_pages - len(ephemeral)))
    order = persistent[:take_p] + ephemeral[: max_pages - take_p]
    for pid in order:
        if freed >= max_bytes:
            break
        pool = engine.pools[table.pool[pid]]
        out.append(Candidate(pid, table.ver[pid], pool.persistent, store.export(table.ref[pid])))
        freed += table.cost[pid]
    return out


def _oldest(table: PageTable, head: int, n: int) -> list[int]:
    out: list[int] = []
    pid: int = table.next[head]
    while pid != head and len(out) < n:
        out.append(pid)
        pid = table.next[pid]
    return out


def complete_demotions(
    engine: Engine, tier: int, batch: list[Candidate], locs: list[int | None]
) -> list[Candidate]:
    """Move each page the tier took (if unchanged since picked); return those it refused."""
    table, state = engine.table, engine.tiering
    refused = []
    for item, loc in zip(batch, locs, strict=True):
        if loc is None:
            refused.append(item)
            continue
        pid = item.pid
        if table.ver[pid] != item.tag or table.tier[pid]:
            state.garbage.append((tier, loc, item.tag))  # flushed or overwritten meanwhile
            state.counters["demotions_stale"] += 1
            continue
        pool = engine.pools[table.pool[pid]]
        owner = pool.owner
        size = len(item.blob)
        engine.store.free(table.ref[pid])
        engine._charge(pool, 0, -table.cost[pid])
        table.unlink(pid)
        if not pool.persistent:
            table.append(state.demoted_eph, pid)
        table.cost[pid] = 0
        table.ref[pid] = loc
        table.tier[pid] = tier + 1
        table.tlen[pid] = size
        state.meta_bytes += PAGE_METADATA_BYTES + state.index_bytes[tier]
        state.tier_index += state.index_bytes[tier]
        state.pages[tier] += 1
        state.bytes[tier] += size
        owner.tier_pages += 1
        owner.tier_bytes += size
        owner.demotions += 1
        state.counters["demotions"] += 1
    state.counters["demotions_refused"] += len(refused)
    return refused


def unchanged(engine: Engine, fetch: Fetch) -> bool:
    """Whether the page a fetch was for is still that version, in that tier.

    Versions are never reused, so a page flushed, overwritten, promoted or
    evicted while its tier copy was being read fails this test.
    """
    table = engine.table
    pid = fetch.pid
    return table.ver[pid] == fetch.tag and table.tier[pid] == fetch.tier + 1


def retract_get(client: ClientState, fetch: Fetch) -> None:
    """Undo the counts of a get that will be asked again (its page changed meanwhile)."""
    client.gets -= 1
    fetch.pool.gets -= 1


def finish_get(engine: Engine, client: ClientState, fetch: Fetch, found: bool) -> bool:
    """Apply a get's rules to a page its tier returned (``found``) or lost.

    A lost page is a miss from now on (get-get); a private ephemeral get takes
    the page.  Returns True if the page should come back to RAM
    (:func:`bring_back`).  The page must be :func:`unchanged`.
    """
    state, pool, pid = engine.tiering, fetch.pool, fetch.pid
    if not found:
        state.counters["tier_lost"] += 1
        engine._remove(pid, pool)  # get-get: once missed, the handle stays empty
        return False
    state.counters["tier_hits"] += 1
    client.succ_gets += 1
    pool.succ_gets += 1
    if pool.destructive_get:
        engine._remove(pid, pool)
        return False
    return True


def bring_back(engine: Engine, fetch: Fetch, blob: bytes) -> bool:
    """Move a fetched page back to RAM if it is :func:`unchanged` and fits.

    It must fit without evicting anything and within its owner's cap;
    otherwise it stays in its tier (and is served from there).
    """
    if not unchanged(engine, fetch):
        return False
    table, state, pool, pid = engine.table, engine.tiering, fetch.pool, fetch.pid
    owner, store = pool.owner, engine.store
    ref = store.adopt(blob, pool.persistent, owner.cid)
    if ref < 0:
        return False
    cost = store.charge(ref) + PAGE_METADATA_BYTES
    index = state.index_bytes[fetch.tier]
    held_after = owner.bytes + owner.tier_bytes - table.tlen[pid] + cost
    if engine.used - index > engine.capacity or (owner.cap is not None and held_after > owner.cap):
        store.free(ref)  # no room in RAM: serve it from the tier, where it stays
        return False
    state.forget(table, pid, owner)
    table.unlink(pid)
    table.cost[pid] = cost
    table.ref[pid] = ref
    engine._charge(pool, 0, cost)
    table.append(state.cold if pool.persistent else owner.lru, pid)
    owner.promotions += 1
    state.counters["promotions"] += 1
    return True


def promote(engine: Engine, client: ClientState, fetch: Fetch, blob: bytes | None) -> bytes | None:
    """Finish a get of a demoted page with what its tier returned (None: the tier lost it),
    bringing the page back to RAM at once when it fits."""
    data = None if blob is None else decode_export(blob)
    if finish_get(engine, client, fetch, blob is not None):
        bring_back(engine, fetch, blob)  # type: ignore[arg-type]
    return data


def note_failure(engine: Engine, client: ClientState, fetch: Fetch) -> None:
    """A tier could not answer a get (counted); an ephemeral page is then a miss."""
    engine.tiering.counters["tier_failures"] += 1
    client.tier_failures += 1
    if not fetch.pool.persistent:
        engine._remove(fetch.pid, fetch.pool)


def forget_dropped(engine: Engine, tier: int, dropped: list[tuple[int, int]]) -> None:
    """Ephemeral pages the tier dropped on its own leave the engine too (as evictions)."""
    table = engine.table
    for pid, tag in dropped:
        if table.ver[pid] == tag and table.tier[pid] == tier + 1:
            pool = engine.pools[table.pool[pid]]
            engine._remove(pid, pool)
            pool.evictions += 1
            pool.owner.evictions += 1
            engine.tiering.counters["tier_dropped"] += 1


def trim_demoted(engine: Engine, max_pages: int) -> int:
    """Evict the oldest demoted ephemeral pages while their metadata passes its share."""
    table, state = engine.table, engine.tiering
    n = 0
    while n < max_pages and state.meta_bytes > engine.capacity // DEMOTEDPAGE_METADATA_BYTES_SHARE:
        pid: int = table.next[state.demoted_eph]
        if pid == state.demoted_eph:
            break
        pool = engine.pools[table.pool[pid]]
        engine._remove(pid, pool)
        pool.evictions += 1
        pool.owner.evictions += 1
        n += 1
    return n


def take_garbage(engine: Engine) -> list[tuple[int, int, int]]:
    """Tier copies no page refers to any more: ``(tier, loc, version)``, for the host to free."""
    state = engine.tiering
    out, state.garbage = state.garbage, []
    return out


def tier_stats(engine: Engine) -> dict[str, Any]:
    """Host-wide figures: demotions, promotions, and pages and bytes per tier."""
    state = engine.tiering
    out: dict[str, Any] = dict(state.counters)
    out["demoted_metadata_bytes"] = state.meta_bytes
    out["tier_pages"] = list(state.pages)
    out["tier_bytes"] = list(state.bytes)
    return out

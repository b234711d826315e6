"""The engine's books: what every page costs, who pays, and what goes when room runs out.

Every page is charged once (:meth:`Ledger._charge`) to its pool, to the pool's
owner and to the host, at the bytes its store reference holds plus
:data:`PAGE_METADATA_BYTES`; every object and every pool is charged once
(:meth:`Ledger._charge_meta`) at :data:`OBJECT_METADATA_BYTES` and
:data:`POOL_METADATA_BYTES`.  The limits on those charges -- a client's cap,
the host's capacity, the persistent share -- are the rules of
:meth:`Ledger.make_room`, which puts consult only when :meth:`Ledger.calm`
says a limit is near.  Which client and which page give way is victim choice,
plain functions in :mod:`tmem.engine.victims`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tmem.arguments import check_capacity
from tmem.engine.frequency import Sketch, check_eviction
from tmem.engine.insertion import check_order, hit_limit, shadow_mask
from tmem.engine.metadata import OBJECT_METADATA_BYTES as OBJECT_METADATA_BYTES
from tmem.engine.metadata import PAGE_METADATA_BYTES as PAGE_METADATA_BYTES
from tmem.engine.metadata import POOL_METADATA_BYTES as POOL_METADATA_BYTES
from tmem.engine.pages import NIL, PageTable
from tmem.engine.state import ClientState, Pool
from tmem.engine.victims import POLICIES, ClientChoice, least_recent, least_useful, most_over
from tmem.errors import InvalidArgument
from tmem.store.base import PageStore

if TYPE_CHECKING:
    from tmem.engine.tiering import TierState

# What the engine's own records cost, worked out from the sizes of the structures
# (tmem.engine.metadata; measured against RSS by bench/metadata.py).
#: One put evicts at most this many pages (bounded work per call).
MAX_EVICTIONS_PER_PUT: Final = 256
#: Persistent pages of clients past their weighted share stop at 1/32 below capacity.
PERSISTENT_HEADROOM = 32
#: Share of the capacity kept as guaranteed floors of ephemeral memory (by weight).
DEFAULT_RESERVE = 0.5
#: A client with no put or get in the host's last operations is idle: it has no
#: floor and no share of persistent memory beyond what others leave.  "A while"
#: is twice as many operations as the capacity holds pages, and at least this
#: (measured on the workload benchmark: 4,096 read 8% more in frontswap).
IDLE_OPERATIONS = 1 << 16
#: While pages are evicted, floors are set again once per this fraction of
#: ``idle_ops`` (a 256th: 256 operations at least), and at once when a client
#: comes or goes or the capacity or a weight changes.  Setting them walks
#: every client; a client that wakes up waits that long for its floor.
FLOOR_REFRESH_SHIFT: Final = 8
#: Ghost entries each client keeps, as a fraction of the pages the capacity holds.
GHOST_FRACTION = 1 / 20
#: Pages the capacity holds, for sizing ghosts and utility decay (4 KiB pages).
_NOMINAL_PAGE = 4096


class Ledger:
    """Charges and limits of the pages of every client; the base of :class:`Engine`.

    ``choose_client`` picks the client that gives up an ephemeral page when
    the host is full (:mod:`tmem.engine.victims`).
    """

    capacity: int
    #: Pages below RAM (:mod:`tmem.engine.tiering`); the engine makes it.
    tiering: TierState
    #: Below this usage no put needs make_room (see :meth:`calm`).
    calm_limit: int
    #: make_room sets the floors again once the operation count reaches this.
    floors_due: int

    def __init__(
        self,
        store: PageStore,
        capacity: Any,
        choose_client: ClientChoice | None = None,
        policy: Any = "utility",
        reserve: Any = DEFAULT_RESERVE,
        order: Any = "adaptive",
        eviction: Any = "lru",
    ) -> None:
        if choose_client is None:
            if not isinstance(policy, str) or policy not in POLICIES:
                raise InvalidArgument(f"unknown policy {policy!r}; choose from {list(POLICIES)}")
            choose_client = POLICIES[policy]
        if type(reserve) not in (int, float) or not 0 <= reserve <= 1:
            raise InvalidArgument(f"reserve {reserve!r} must be a fraction in [0, 1]")
        self.store = store
        self.choose_client = choose_client
        self.policy = next((k for k, v in POLICIES.items() if v is choose_client), "custom")
        self.reserve = float(reserve)
        #: Where a private ephemeral pool's new page goes (:mod:`tmem.engine.insertion`).
        self.order = check_order(order)
        self.adaptive = self.order == "adaptive"
        #: Which of a client's ephemeral pages goes (:mod:`tmem.engine.frequency`).
        self.eviction = check_eviction(eviction)
        #: Gets counted per handle under the "frequency" eviction, else None.
        self.sketch: Sketch | None = None
        #: Ghosts are kept, and their hits counted, only for a policy that reads them.
        self.track_ghosts = choose_client is least_useful
        self.sharing = choose_client is most_over
        self.ops = 0  # puts and gets so far: the engine's only clock
        self.evictions = 0
        self.poor: set[int] = set()  # page ids kept raw for compressing poorly
        self.pressure_until = 0  # persistent_over speaks until the clock reaches this
        self._apply_capacity(capacity)
        self.table = PageTable()
        self.clients: dict[str, ClientState] = {}  # live clients by name
        self.pools: dict[int, Pool] = {}  # uid -> pool, for eviction
        self.eph_used = 0  # bytes charged for ephemeral pages
        self.pages = 0  # pages stored, each charged PAGE_METADATA_BYTES of metadata
        self.meta_used = 0  # bytes charged for objects and pools (see _charge_meta)

    @property
    def used(self) -> int:
        """Real bytes held for pages: the store's bytes in use plus the metadata of
        pages, objects and pools.

        Clients are charged per page, object and pool they hold (``charged``);
        content the store shares between pages (deduplication) is counted once here.
        """
        return (
            self.store.used_bytes
            + PAGE_METADATA_BYTES * self.pages
            + self.meta_used
            + self.tiering.tier_index
        )

    @property
    def charged(self) -> int:
        """Bytes charged to clients: shared content counts once per page that holds it."""
        return sum(client.bytes for client in self.clients.values())

    def _apply_capacity(self, capacity: Any) -> None:
        """Check and set the capacity, and the calm limit that follows from it."""
        size = self.capacity = check_capacity(capacity)
        # Below this usage no put needs eviction or meets the persistent share rule.
        self.calm_limit = size - size // PERSISTENT_HEADROOM
        self.ghost_limit = max(16, int(size // _NOMINAL_PAGE * GHOST_FRACTION))
        self.decay_every = max(64, size // _NOMINAL_PAGE)
        self.hit_limit = hit_limit(size // _NOMINAL_PAGE)
        if self.eviction == "frequency":  # counts start again at a new capacity
            self.sketch = Sketch(size // _NOMINAL_PAGE)
        self.shadow_mask = shadow_mask(size // _NOMINAL_PAGE)
        self.idle_ops = max(IDLE_OPERATIONS, 2 * size // _NOMINAL_PAGE)
        self.floors_due = 0  # floors are set again at the next eviction
        self.pressure_ops = max(1024, size // _NOMINAL_PAGE)

    def set_capacity(self, capacity: Any) -> None:
        """Change the host's capacity; ephemeral pages are evicted until it fits."""
        self._apply_capacity(capacity)
        self.shrink_to_capacity()

    def reassign(self, pool: Pool, owner: ClientState) -> None:
        """Charge a shared pool's pages to ``owner`` instead of its current owner."""
        pages, meta, old = pool.pages, pool.meta, pool.owner
        nbytes = pool.bytes - meta
        self._charge(pool, -pages, -nbytes)
        self._charge_meta(pool, -meta)
        pool.owner = owner
        self._charge(pool, pages, nbytes)
        self._charge_meta(pool, meta)
        table = self.table
        for objpages in pool.objs.values():
            for pid in objpages.values():
                if table.tier[pid]:  # its bytes in the tier go with it; it stays off the LRU
                    self.tiering.reassign(table, pid, old, owner)
                elif not pool.persistent:
                    table.unlink(pid)
                    if pid in self.poor:
                        old.poor_pages -= 1
                        owner.poor_pages += 1
                        table.append(owner.poor_lru, pid)
                    else:
                        table.append(owner.lru, pid)

    def _remove(self, pid: int, pool: Pool) -> None:
        """Take page ``pid`` out of its object (dropping an emptied object) and free it."""
        table = self.table
        oid = table.oid[pid]
        pages = pool.objs[oid]
        del pages[table.index[pid]]
        if not pages:
            del pool.objs[oid]
            self._charge_meta(pool, -OBJECT_METADATA_BYTES)
        self._drop(pid, pool)

    def _drop(self, pid: int, pool: Pool) -> None:
        """Free a page already removed from its object's dict; undo its charges."""
        table = self.table
        if table.tier[pid]:
            self.tiering.forget(table, pid, pool.owner)
        else:
            self.store.free(table.ref[pid])
        # _charge(pool, -1, -cost), inline: every flush, eviction and destructive get
        cost = table.cost[pid]
        owner = pool.owner
        pool.pages -= 1
        pool.bytes -= cost
        owner.pages -= 1
        owner.bytes -= cost
        self.pages -= 1
        if not pool.persistent:
            owner.eph_bytes -= cost
            owner.eph_pages -= 1
            self.eph_used -= cost
        poor = self.poor
        if poor and pid in poor:
            poor.discard(pid)
            owner.poor_pages -= 1
        # Off its owner's LRU, or the tiers' lists, and released: table.unlink and
        # table.release in one, inline (every flush, eviction and destructive get).
        prev, nxt = table.prev, table.next
        p: int = prev[pid]
        if p != NIL:
            n: int = nxt[pid]
            nxt[p] = n
            prev[n] = p
            prev[pid] = NIL
        table.oid[pid] = 0
        table.ver[pid] = 0
        table.tier[pid] = 0
        nxt[pid] = table.free_head
        table.free_head = pid

    def _charge(self, pool: Pool, pages: int, nbytes: int) -> None:
        """Charge ``pages`` pages of ``nbytes`` (negative: a refund) to the pool, owner and host.

        A page costs what the store charges for its reference plus
        :data:`PAGE_METADATA_BYTES`; the pool's owner pays for it, and for an
        ephemeral pool the bytes also count in the owner's and the host's
        ephemeral totals, which eviction weighs.
        """
        owner = pool.owner
        pool.pages += pages
        pool.bytes += nbytes
        owner.pages += pages
        owner.bytes += nbytes
        self.pages += pages
        if not pool.persistent:
            owner.eph_bytes += nbytes
            owner.eph_pages += pages
            self.eph_used += nbytes

    def _charge_meta(self, pool: Pool, nbytes: int) -> None:
        """Charge ``nbytes`` of object or pool metadata (negative: a refund) to the pool,
        its owner and the host.

        Never ephemeral bytes, even in an ephemeral pool: evicting a page frees its
        object's metadata only with the object's last page, and a pool's never.
        """
        pool.meta += nbytes
        pool.bytes += nbytes
        pool.owner.bytes += nbytes
        self.meta_used += nbytes

    # --- making room -----------------------------------------------------

    def calm(self, owner: ClientState, extra: int) -> bool:
        """True if ``extra`` more bytes held for ``owner`` leave every rule of make_room idle.

        That is when ``owner`` has no cap and usage stays within
        :attr:`calm_limit`, below both the capacity and the persistent share
        rule; puts test this first and skip make_room (the common case).
        """
        return owner.cap is None and self.used + extra <= self.calm_limit

    def make_room(
        self, owner: ClientState, persistent: bool, cost: int, meta: int = PAGE_METADATA_BYTES
    ) -> str | None:
        """Evict until a new page of ``cost`` bytes fits; None, or the reason it cannot.

        The page's data is already in the store (and in :attr:`used`); only
        ``meta``, its metadata (and its new object's), is still to come;
        ``cost`` is all the put charges ``owner``.  The rules, in order:

        * **cap**: a client over its cap (RAM and tier bytes) loses its own least recently used
          ephemeral pages; if its persistent pages alone pass the cap, no.
        * **capacity**: persistent pages are never evicted, so a put that only
          they block is refused.
        * **share**: see :meth:`over_persistent_share`.
        * a persistent put takes its owner's own ephemeral pages first; after
          those, and for every ephemeral put, ``choose_client`` picks whose
          page goes (with floors set for the clients now active), and
          :func:`least_recent` which of its pages: the least recent, or its
          least recent page kept raw because it compresses poorly once that
          one has held more bytes for longer.  A poorly compressible page is
          admitted like any other: refusing it read more on the workload
          benchmark (docs/workload.md).
        * at most :data:`MAX_EVICTIONS_PER_PUT` evictions (bounded work).
        """
        # A cap bounds all a client holds: in RAM and in the tiers below it.
        if owner.cap is not None and owner.bytes + owner.tier_bytes + cost > owner.cap:
            if owner.bytes + owner.tier_bytes - owner.eph_bytes + cost > owner.cap:
                return "cap"
            for _ in range(MAX_EVICTIONS_PER_PUT):
                if owner.eph_bytes <= 0:
                    return "cap"
                self.evict_from(owner)
                if owner.bytes + owner.tier_bytes + cost <= owner.cap:
                    break
            else:
                return "cap"
        capacity = self.capacity
        need = self.used + meta - capacity
        if need > self.eph_used:
            if persistent:
                self.persistent_refused(owner, cost)
            return "capacity"
        if persistent and self.over_persistent_share(owner, cost, meta):
            return "share"
        if need > 0:
            if self.ops >= self.floors_due:
                self.set_floors()
            for _ in range(MAX_EVICTIONS_PER_PUT):
                if self.eph_used <= 0:  # evicted pages whose content others still share
                    return "capacity"
                if persistent and owner.eph_bytes > 0:
                    self.evict_from(owner)
                else:
                    self.evict_from(self.choose(owner, cost))
                if self.used + meta <= capacity:
                    break
            else:
                return "capacity"
        return None

    def over_persistent_share(
        self, owner: ClientState, cost: int, meta: int = PAGE_METADATA_BYTES
    ) -> bool:
        """True if persistent pages nearly fill the host and ``owner`` holds past its share.

        Persistent pages cannot be evicted, so without this rule the first
        client to fill the host would keep it. Once persistent pages would
        reach the last :data:`PERSISTENT_HEADROOM` of the capacity, only
        clients within their weighted share of the capacity may add more; the
        others are refused and, like a frontswap that writes its oldest pages
        back to its swap file, give room back to those under their share.
        """
        # As in make_room, the new page's data already counts in ``used``.
        persistent_after = self.used + meta - self.eph_used
        if persistent_after <= self.calm_limit:
            return False
        return owner.bytes - owner.eph_bytes + cost > self.persistent_target(owner)

    # --- shares: active clients, floors, persistent targets ---------------

    def active(self, client: ClientState) -> bool:
        """True if ``client`` has a pool and made a put or get in the host's last
        ``idle_ops`` operations (see :data:`IDLE_OPERATIONS`); a client without pools
        can hold nothing."""
        return bool(client.pools) and self.ops - client.last_active <= self.idle_ops

    def _active_weight(self, client: ClientState | None = None) -> int:
        """The weights of the active clients (and of ``client``, active or not)."""
        total = sum(c.weight for c in self.clients.values() if c is client or self.active(c))
        return max(total, 1)

    def persistent_target(self, client: ClientState) -> int:
        """The persistent bytes ``client`` may keep once the host is short of room.

        The capacity split by weight among the clients now active (a lone
        active client's target is the whole host; idle clients hold no share
        they do not use).  Published in the client's stats; a frontswap
        shrinks toward it when the host says it is over (``persistent_over``).
        """
        return self.capacity * client.weight // self._active_weight(client)

    def persistent_refused(self, owner: ClientState, cost: int) -> None:
        """A persistent put of ``owner`` found the host full: if ``owner`` is within its
        target, the clients over theirs are told so for a while (see persistent_over)."""
        if owner.bytes - owner.eph_bytes + cost <= self.persistent_target(owner):
            self.pressure_until = self.ops + self.pressure_ops

    def persistent_over(self, client: ClientState) -> int:
        """Bytes of persistent pages ``client`` holds above its target while persistent
        pages nearly fill the host or a client within its target was refused lately
        (0 otherwise)."""
        if self.used - self.eph_used <= self.calm_limit and self.ops >= self.pressure_until:
            return 0
        return max(0, client.bytes - client.eph_bytes - self.persistent_target(client))

    def choose(self, putter: ClientState | None, cost: int) -> ClientState:
        """The client that gives up an ephemeral page: ``choose_client``'s answer (the
        shipped choices called directly, a native call when compiled)."""
        if self.track_ghosts:  # choose_client is least_useful
            return least_useful(self.clients.values(), putter, cost)
        if self.sharing:  # choose_client is most_over
            return most_over(self.clients.values(), putter, cost)
        return self.choose_client(self.clients.values(), putter, cost)

    def set_floors(self) -> None:
        """Give every active client its floor: its weighted share of ``reserve`` of the
        capacity; idle clients get none."""
        self.floors_due = self.ops + (self.idle_ops >> FLOOR_REFRESH_SHIFT)
        reserved, total = self.reserve * self.capacity, self._active_weight()
        for client in self.clients.values():
            client.floor = int(reserved * client.weight / total) if self.active(client) else 0

    def evict_from(self, client: ClientState) -> None:
        """Evict the ephemeral page of ``client`` that :func:`least_recent` picks."""
        table = self.table
        pid = least_recent(table, client, self.tiering.version, self.sketch)
        pool = self.pools[table.pool[pid]]
        oid, index = table.oid[pid], table.index[pid]
        if self.track_ghosts:  # remember the page was evicted (a ghost), the oldest go
            ghosts = client.ghosts
            ghosts.add_at(ghosts.handles.slot((pool.uid, oid, index)))
            if len(ghosts) > self.ghost_limit:
                ghosts.pop_oldest()
        self.evictions += 1
        if self.evictions % self.decay_every == 0:  # recent misses count most
            for other in self.clients.values():
                other.utility /= 2
                other.duel.decay()
        # _remove(pid, pool), inline: the put of a full host evicts a page
        pages = pool.objs[oid]
        del pages[index]
        if not pages:
            del pool.objs[oid]
            self._charge_meta(pool, -OBJECT_METADATA_BYTES)
        self._drop(pid, pool)
        pool.evictions += 1
        client.evictions += 1

    def shrink_to_cap(self, client: ClientState) -> None:
        """Evict the client's ephemeral pages until it is within its cap (or has none)."""
        while (
            client.cap is not None
            and client.bytes + client.tier_bytes > client.cap
            and client.eph_bytes > 0
        ):
            self.evict_from(client)

    def shrink_to_capacity(self) -> None:
        """Evict ephemeral pages, ``choose_client`` first, until the host fits its capacity."""
        self.set_floors()
        while self.used > self.capacity and self.eph_used > 0:
            self.evict_from(self.choose(None, 0))

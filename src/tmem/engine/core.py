"""The tmem engine: every rule of the client contract, once, with no I/O.

The engine is single-threaded and pure: it is handed a page store and does no
locking, no I/O and no timekeeping (:class:`tmem.Host` adds the lock).  Its
duties are the contract of ``DESIGN.md`` section 1:

* handles ``(pool, oid, index)`` are checked on every page call
  (:func:`tmem.arguments.check_handle` decides every case the cheap pre-test fails);
* a put copies the page into the store; its cost is charged and room made by
  evicting ephemeral pages, never persistent ones (:mod:`tmem.engine.ledger`);
* a duplicate put first flushes the old page, so a rejected duplicate leaves
  the handle empty (put-put-get) and an accepted one replaces it;
* gets from private ephemeral pools are destructive (``Pool.destructive_get``);
  other gets of an ephemeral page make it its owner's most recently used;
* which client and which page give way is victim choice
  (:mod:`tmem.engine.victims`); where a client's new ephemeral page goes on
  its list is its order (:mod:`tmem.engine.insertion`).

Every refused put is counted under its reason (``reject_<reason>``).
"""

from __future__ import annotations

import uuid as _uuid
from typing import Any

from tmem.api import REJECT_REASONS
from tmem.arguments import (
    INDEX_LIMIT,
    OID_LIMIT,
    as_page,
    check_cap,
    check_handle,
    check_name,
    check_page_size,
    check_uuid,
    check_weight,
)
from tmem.engine.ledger import (
    DEFAULT_RESERVE,
    MAX_EVICTIONS_PER_PUT,
    OBJECT_METADATA_BYTES,
    PAGE_METADATA_BYTES,
    POOL_METADATA_BYTES,
    Ledger,
)
from tmem.engine.metadata import SHARED_OID
from tmem.engine.state import ClientState, Pool
from tmem.engine.tiering import Fetch, TierState, tier_stats
from tmem.engine.victims import ClientChoice
from tmem.errors import (
    InvalidArgument,
    LimitExceeded,
    NoSuchClient,
    NoSuchPool,
    PermissionDenied,
)
from tmem.store.base import PageStore


class Engine(Ledger):
    """Pools, objects and pages of every client, within one capacity in bytes.

    ``choose_client`` picks the client that gives up an ephemeral page when
    the host is full (:mod:`tmem.engine.victims`).
    """

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
        super().__init__(store, capacity, choose_client, policy, reserve, order, eviction)
        self.tiering = TierState(self.table)  # pages below RAM
        self.shared: dict[_uuid.UUID, Pool] = {}
        self.grants: dict[_uuid.UUID, set[str]] = {}
        self.departed: dict[str, int] = {}  # counters of clients that left
        self._next_uid = 0
        self._next_cid = 0
        #: Pools one client may be in at once (None: no limit; the daemon sets one).
        self.max_pools: int | None = None

    # --- clients ---------------------------------------------------------

    def add_client(self, name: Any, weight: Any = 1, cap: Any = None) -> ClientState:
        """Register a connected client; names are unique among live clients."""
        name = check_name(name)
        if name in self.clients:
            raise InvalidArgument(f"a client named {name!r} is already connected")
        table = self.table
        client = ClientState(name, self._next_cid, 1, None, table.new_list(), table.new_list())
        client.last_active = self.ops
        self._next_cid += 1
        client.weight = check_weight(weight)
        client.cap = check_cap(cap)
        self.clients[name] = client
        self.floors_due = 0
        return client

    def remove_client(self, client: ClientState) -> None:
        """The client leaves: it leaves every pool; its private pages are freed."""
        if not client.live:
            return
        for pool_id in list(client.pools):
            self.destroy_pool(client, pool_id)
        client.add_to(self.departed)
        self.table.release(client.lru)
        self.table.release(client.poor_lru)
        self.store.forget_client(client.cid)
        client.live = False
        del self.clients[client.name]
        self.floors_due = 0

    def client(self, name: str) -> ClientState:
        """The live client called ``name``."""
        try:
            return self.clients[name]
        except KeyError:
            raise NoSuchClient(f"no client named {name!r} is connected") from None

    def set_client(
        self,
        name: str,
        weight: Any = None,
        cap: Any = ...,
        frozen: Any = None,
    ) -> ClientState:
        """Change a client's weight, cap (None: unbounded) or frozen state."""
        client = self.client(name)
        if weight is not None:
            client.weight = check_weight(weight)
            self.floors_due = 0
        if cap is not ...:
            client.cap = check_cap(cap)
            self.shrink_to_cap(client)
        if frozen is not None:
            if type(frozen) is not bool:
                raise InvalidArgument(f"frozen {frozen!r} must be True or False")
            client.frozen = frozen
        return client

    # --- shared-pool rights ---------------------------------------------

    def authorize_shared(self, name: str, uuid: Any) -> None:
        """Allow client ``name`` (connected or not) to create or join pool ``uuid``."""
        self.grants.setdefault(check_uuid(uuid), set()).add(name)

    def revoke_shared(self, name: str, uuid: Any) -> None:
        """Withdraw the right; if ``name`` is in that pool now, it leaves it."""
        uuid = check_uuid(uuid)
        self.grants.get(uuid, set()).discard(name)
        pool = self.shared.get(uuid)
        client = self.clients.get(name)
        if pool is not None and client is not None and client in pool.members:
            self.destroy_pool(client, pool.members[client])

    # --- pools -----------------------------------------------------------

    def new_pool(
        self,
        client: ClientState,
        persistent: Any = False,
        shared: Any = False,
        uuid: Any = None,
        page_size: Any = 4096,
    ) -> int:
        """Create a pool (or join the shared pool ``uuid``); return the client's id for it."""
        page_size = check_page_size(page_size)
        persistent, shared = bool(persistent), bool(shared)
        if self.max_pools is not None and len(client.pools) >= self.max_pools:
            raise LimitExceeded(f"client {client.name!r} is in {self.max_pools} pools, the limit")
        if shared:
            key = check_uuid(uuid)
            if client.name not in self.grants.get(key, ()):
                raise PermissionDenied(f"client {client.name!r} may not use shared pool {key}")
            found = self.shared.get(key)
            if found is not None:
                return self._join(client, found, persistent, page_size)
        elif uuid is not None:
            raise InvalidArgument("a uuid names a shared pool; pass shared=True")
        pool = Pool(self._next_uid, client, persistent, shared, uuid, page_size)
        self._next_uid += 1
        self.pools[pool.uid] = pool
        if shared:
            self.shared[key] = pool
        self._charge_meta(pool, POOL_METADATA_BYTES)
        if self.used > self.capacity:  # ephemeral pages make room for it
            self.shrink_to_capacity()
        return self._attach(client, pool)

    def _join(self, client: ClientState, pool: Pool, persistent: bool, page_size: int) -> int:
        if pool.persistent != persistent or pool.page_size != page_size:
            raise InvalidArgument(
                f"shared pool {pool.uuid} is {'persistent' if pool.persistent else 'ephemeral'}"
                f" with {pool.page_size}-byte pages"
            )
        if client in pool.members:
            return pool.members[client]
        return self._attach(client, pool)

    def _attach(self, client: ClientState, pool: Pool) -> int:
        pool_id = client.next_pool_id
        client.next_pool_id += 1
        client.pools[pool_id] = pool
        pool.members[client] = pool_id
        return pool_id

    def pool_of(self, client: ClientState, pool_id: Any) -> Pool:
        """The pool ``pool_id`` of ``client``, or NoSuchPool."""
        try:
            return client.pools[pool_id]
        except (KeyError, TypeError):
            raise no_such_pool(client, pool_id) from None

    def destroy_pool(self, client: ClientState, pool_id: Any) -> None:
        """The client leaves the pool; the pool and its pages go when no client is left."""
        pool = self.pool_of(client, pool_id)
        del client.pools[pool_id]
        del pool.members[client]
        if pool.members:
            if pool.owner is client:
                self.reassign(pool, next(iter(pool.members)))
            return
        for pages in list(pool.objs.values()):
            for pid in list(pages.values()):
                self._drop(pid, pool)
        pool.objs.clear()
        self._charge_meta(pool, -pool.meta)  # its objects' and its own
        del self.pools[pool.uid]
        if pool.uuid is not None:
            del self.shared[pool.uuid]

    # --- pages -----------------------------------------------------------

    def put(self, client: ClientState, pool_id: Any, oid: Any, index: Any, data: Any) -> bool:
        """Copy ``data`` into the handle; True if stored, False if refused."""
        try:
            pool = client.pools[pool_id]
        except (KeyError, TypeError):
            raise no_such_pool(client, pool_id) from None
        if not (
            type(oid) is int
            and 0 <= oid < OID_LIMIT
            and type(index) is int
            and 0 <= index < INDEX_LIMIT
        ):
            oid, index = check_handle(oid, index)
        page_size = pool.page_size
        # A flat view of a page (the daemon's receive buffer) is taken as it is: every
        # store copies it through the buffer protocol; as_page would make another view.
        if (type(data) is not bytes or len(data) != page_size) and not (
            type(data) is memoryview and data.c_contiguous and data.nbytes == len(data) == page_size
        ):
            data = as_page(data, page_size)
        client.puts += 1
        pool.puts += 1
        client.last_active = self.ops = self.ops + 1
        objs = pool.objs
        pages = objs.get(oid)
        if pages is not None:
            old = pages.get(index)
            if old is not None:
                # Even a whole page more would leave every limit untouched: replace in place.
                if (
                    not client.frozen
                    and not self.table.tier[old]
                    and self.calm(pool.owner, pool.page_size)
                ):
                    return self._replace(client, pool, old, data)
                self._remove(old, pool)  # a duplicate put flushes the old page, whatever follows
                pages = objs.get(oid)  # that may have removed the emptied object
        if client.frozen:
            return self._reject(client, pool, "frozen")
        owner, store, persistent = pool.owner, self.store, pool.persistent
        ref = store.put(data, persistent, owner.cid)
        if ref < 0:
            return self._reject(client, pool, "store")
        cost = store.charge(ref) + PAGE_METADATA_BYTES
        poor = not persistent and store.poor(ref)
        # ref's bytes already count in the store's; only its metadata is to come
        meta = PAGE_METADATA_BYTES  # and its object's, if the put makes one
        if pages is None:
            meta += OBJECT_METADATA_BYTES
        if not self.calm(owner, meta):
            owed = cost + meta - PAGE_METADATA_BYTES  # all the put charges the owner
            reason = self.make_room(owner, persistent, owed, meta)
            # An object's pages dict leaves ``objs`` when its last page goes, and only then.
            if reason is None and pages is not None and not pages:
                # eviction took the object's last page: its metadata is to come again
                meta += OBJECT_METADATA_BYTES
                owed += OBJECT_METADATA_BYTES
                reason = self.make_room(owner, persistent, owed, meta)
            if reason is not None:
                store.free(ref)
                return self._reject(client, pool, reason)
            if pages is not None and not pages:  # eviction emptied and removed the object
                pages = None
        tiering, table = self.tiering, self.table
        if pages and oid >= SHARED_OID:  # one copy of a boxed object id an object
            for first in pages.values():
                oid = table.oid[first]
                break
        tiering.version += 1  # next_version(), inline
        if persistent:
            pid = table.alloc(ref, cost, pool.uid, oid, index, tiering.version, tiering.cold)
        else:
            last = (  # the page counts in its owner's ephemeral pages (charged below)
                pool.destructive_get
                and self.adaptive
                and owner.duel.put((pool.uid, oid, index), owner.eph_pages + 1, self.shadow_mask)
            )
            if poor:
                pid = table.alloc(ref, cost, pool.uid, oid, index, tiering.version)
                self._file_poor(owner, pid)
            elif last:
                pid = table.alloc(ref, cost, pool.uid, oid, index, tiering.version)
                table.prepend(owner.lru, pid)
            else:
                pid = table.alloc(ref, cost, pool.uid, oid, index, tiering.version, owner.lru)
        if pages is None:
            pages = objs[oid] = {}
            self._charge_meta(pool, OBJECT_METADATA_BYTES)
        pages[index] = pid
        # _charge(pool, 1, cost), inline
        pool.pages += 1
        pool.bytes += cost
        owner.pages += 1
        owner.bytes += cost
        self.pages += 1
        if not persistent:
            owner.eph_bytes += cost
            owner.eph_pages += 1
            self.eph_used += cost
        client.succ_puts += 1
        pool.succ_puts += 1
        return True

    def _replace(self, client: ClientState, pool: Pool, pid: int, data: Any) -> bool:
        """Overwrite page ``pid`` in place; only while :meth:`calm` holds for a whole page.

        The same outcome as flushing the old page and putting the new one,
        without giving back and taking again the page id and its object slot.
        """
        owner, store, table = pool.owner, self.store, self.table
        ref = store.put(data, pool.persistent, owner.cid)
        if ref < 0:  # a refused duplicate put flushes the old page
            self._remove(pid, pool)
            return self._reject(client, pool, "store")
        store.free(table.ref[pid])
        cost = store.charge(ref) + PAGE_METADATA_BYTES
        self._charge(pool, 0, cost - table.cost[pid])
        table.ref[pid] = ref
        table.cost[pid] = cost
        table.ver[pid] = self.tiering.next_version()
        if pool.persistent:
            table.touch(self.tiering.cold, pid)
        else:
            table.unlink(pid)
            if pid in self.poor:
                self.poor.discard(pid)
                owner.poor_pages -= 1
            if store.poor(ref):
                self._file_poor(owner, pid)
            else:
                table.append(owner.lru, pid)
        client.succ_puts += 1
        pool.succ_puts += 1
        if self.used > self.capacity:  # a store may charge more than a page (an index grew)
            self.shrink_to_capacity()
        return True

    def _file_poor(self, owner: ClientState, pid: int) -> None:
        """List page ``pid`` among ``owner``'s poorly compressible pages (evicted sooner)."""
        self.table.append(owner.poor_lru, pid)
        self.poor.add(pid)
        owner.poor_pages += 1

    def _reject(self, client: ClientState, pool: Pool, reason: str) -> bool:
        client.failed_puts += 1
        pool.failed_puts += 1
        client.rejects[reason] += 1
        return False

    def get(
        self, client: ClientState, pool_id: Any, oid: Any, index: Any
    ) -> bytes | Fetch | None:
        """A copy of the page at the handle, or None; private ephemeral gets take it away.

        A page a tier below RAM holds comes back as a :class:`Fetch`: the host
        loads it and finishes the get with :func:`tmem.engine.tiering.promote`.
        """
        try:
            pool = client.pools[pool_id]
        except (KeyError, TypeError):
            raise no_such_pool(client, pool_id) from None
        if not (
            type(oid) is int
            and 0 <= oid < OID_LIMIT
            and type(index) is int
            and 0 <= index < INDEX_LIMIT
        ):
            oid, index = check_handle(oid, index)
        client.gets += 1
        pool.gets += 1
        client.last_active = self.ops = self.ops + 1
        objs = pool.objs
        pages = objs.get(oid)
        if pages is None or (pid := pages.get(index)) is None:
            if not pool.persistent:
                key: object = (pool.uid, oid, index)  # one tuple for both uses
                owner = pool.owner
                duel = self.adaptive and pool.destructive_get
                if self.track_ghosts or duel:  # one lookup for the ghosts and the duel
                    handles = owner.duel.handles
                    at = handles.find(key)
                    # A miss on a page evicted lately (a ghost hit): more memory would
                    # have saved it.
                    if self.track_ghosts and owner.ghosts.discard_at(at):
                        owner.utility += 1
                    if duel:
                        owner.duel.get_at(key, at, False, self.hit_limit, self.shadow_mask)
                    handles.settle(at)
                if self.sketch is not None:  # a reference the client's cache missed
                    self.sketch.add((pool.uid, oid, index))
            return None
        if self.sketch is not None and not pool.persistent:
            self.sketch.add((pool.uid, oid, index))
        table = self.table
        if table.tier[pid]:
            return Fetch(table, pid, pool)
        data = self.store.get(table.ref[pid])
        if pool.destructive_get:
            if self.adaptive:
                pool.owner.duel.get((pool.uid, oid, index), True, self.hit_limit, self.shadow_mask)
            # _remove(pid, pool), inline: we hold its object's pages already
            del pages[index]
            if not pages:
                del objs[oid]
                self._charge_meta(pool, -OBJECT_METADATA_BYTES)
            self._drop(pid, pool)
        elif not pool.persistent:  # a hit on a shared ephemeral page makes it most recent
            owner = pool.owner
            self.table.touch(owner.poor_lru if pid in self.poor else owner.lru, pid)
        client.succ_gets += 1
        pool.succ_gets += 1
        return data

    def flush_page(self, client: ClientState, pool_id: Any, oid: Any, index: Any) -> None:
        """Forget the page at the handle (a no-op if there is none)."""
        try:
            pool = client.pools[pool_id]
        except (KeyError, TypeError):
            raise no_such_pool(client, pool_id) from None
        if not (
            type(oid) is int
            and 0 <= oid < OID_LIMIT
            and type(index) is int
            and 0 <= index < INDEX_LIMIT
        ):
            oid, index = check_handle(oid, index)
        client.flushes += 1
        pool.flushes += 1
        pages = pool.objs.get(oid)
        if pages is not None:
            pid = pages.pop(index, None)
            if pid is not None:
                if not pages:
                    del pool.objs[oid]
                    self._charge_meta(pool, -OBJECT_METADATA_BYTES)
                self._drop(pid, pool)  # inline rather than _remove: flush is a hot path

    def flush_object(self, client: ClientState, pool_id: Any, oid: Any) -> None:
        """Forget every page of the object."""
        pool = self.pool_of(client, pool_id)
        oid, _ = check_handle(oid, 0)
        client.flush_objects += 1
        pool.flush_objects += 1
        pages = pool.objs.pop(oid, None)
        if pages:
            self._charge_meta(pool, -OBJECT_METADATA_BYTES)
            for pid in pages.values():
                self._drop(pid, pool)

    # --- statistics ------------------------------------------------------

    def describe_client(self, client: ClientState) -> dict[str, Any]:
        """The client's stats: counters, charges and pools, and what the host decided for
        it: its persistent target and how far over it the client is, its floor of
        ephemeral memory and its utility (recent ghost hits)."""
        self.set_floors()
        out = client.describe()
        out.update(
            persistent_target=self.persistent_target(client),
            persistent_over=self.persistent_over(client),
            ephemeral_floor=client.floor,
            utility=round(client.utility, 3),
            insertion="reuse" if client.duel.reusing else "lru",
            active=self.active(client),
        )
        return out

    def host_stats(self) -> dict[str, Any]:
        """Totals over every client that ever connected, plus capacity and charges."""
        totals: dict[str, Any] = dict(self.departed)
        for reason in REJECT_REASONS:
            totals.setdefault("reject_" + reason, 0)
        for client in self.clients.values():
            client.add_to(totals)
        charged = self.charged
        totals.update(
            capacity=self.capacity,
            pages=self.pages,
            bytes=self.used,
            ephemeral_bytes=self.eph_used,
            persistent_bytes=charged - self.eph_used,
            charged_bytes=charged,
            metadata_bytes_per_page=PAGE_METADATA_BYTES,
            metadata_bytes_per_object=OBJECT_METADATA_BYTES,
            metadata_bytes_per_pool=POOL_METADATA_BYTES,
            pools=len(self.pools),
            tiering=tier_stats(self),
            policy=self.policy,
            reserve=self.reserve,
            order=self.order,
            eviction=self.eviction,
            clients={c.name: self.describe_client(c) for c in self.clients.values()},
        )
        return totals


def no_such_pool(client: ClientState, pool_id: Any) -> NoSuchPool:
    """The error for a pool id the client does not have."""
    return NoSuchPool(f"client {client.name!r} has no pool {pool_id!r}")


__all__ = [
    "Engine",
    "MAX_EVICTIONS_PER_PUT",
    "OBJECT_METADATA_BYTES",
    "PAGE_METADATA_BYTES",
    "POOL_METADATA_BYTES",
]

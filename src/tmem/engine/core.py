"""The tmem engine: every rule of the client contract, once, with no I/O.

The engine is single-threaded and pure: it is handed a page store and does no
locking, no I/O and no timekeeping (:class:`tmem.Host` adds the lock).  Its
duties are the contract of ``DESIGN.md`` section 1:

* handles ``(pool, oid, index)`` are checked here, and only here;
* a put copies the page into the store, charges its real cost (the store's
  bytes plus :data:`PAGE_METADATA_BYTES`) to the pool's owner and to the host,
  and makes room by evicting ephemeral pages, never persistent ones;
* a duplicate put first flushes the old page, so a rejected duplicate leaves
  the handle empty (put-put-get) and an accepted one replaces it;
* gets from private ephemeral pools are destructive; other gets refresh the
  page's place in its owner's LRU list (ephemeral) or leave it be;
* eviction picks the client most over its weighted share of ephemeral memory
  (:mod:`tmem.engine.evict`) and takes that client's least recently used page.

Every refused put is counted under its reason (``reject_<reason>``).
"""

from __future__ import annotations

import operator
import uuid as _uuid
from typing import Any

from tmem.api import INDEX_LIMIT, OID_LIMIT, REJECT_REASONS, check_page_size
from tmem.engine.evict import (
    MAX_EVICTIONS_PER_PUT,
    PAGE_METADATA_BYTES,
    PERSISTENT_HEADROOM,
    EvictionMixin,
)
from tmem.engine.pages import PageTable
from tmem.engine.state import ClientState, Pool
from tmem.errors import InvalidArgument, NoSuchClient, NoSuchPool, PermissionDenied
from tmem.store.base import PageStore


def check_handle(oid: Any, index: Any) -> tuple[int, int]:
    """Return ``(oid, index)`` as ints, or raise InvalidArgument if out of range."""
    if isinstance(oid, bool) or isinstance(index, bool):
        raise InvalidArgument(f"object id and index must be integers, not {oid!r}, {index!r}")
    try:
        oid = operator.index(oid)
        index = operator.index(index)
    except TypeError:
        raise InvalidArgument(
            f"object id and index must be integers, not {oid!r}, {index!r}"
        ) from None
    if not 0 <= oid < OID_LIMIT:
        raise InvalidArgument(f"object id {oid!r} is outside [0, 2**192)")
    if not 0 <= index < INDEX_LIMIT:
        raise InvalidArgument(f"page index {index!r} is outside [0, 2**32)")
    return oid, index


def as_page(data: Any, page_size: int) -> bytes | memoryview:
    """Return ``data`` as a byte buffer of exactly ``page_size`` bytes, or raise."""
    if type(data) is not bytes:
        try:
            data = memoryview(data).cast("B")
        except TypeError:
            raise InvalidArgument(
                f"page data must be bytes-like, not {type(data).__name__}"
            ) from None
    if len(data) != page_size:
        raise InvalidArgument(f"page data is {len(data)} bytes; this pool's pages are {page_size}")
    return data


class Engine(EvictionMixin):
    """Pools, objects and pages of every client, within one capacity in bytes."""

    def __init__(self, store: PageStore, capacity: int) -> None:
        self.store = store
        self._apply_capacity(capacity)
        self.table = PageTable()
        self._refs = self.table.ref  # the same array for the table's whole life
        self.clients: dict[str, ClientState] = {}
        self.pools: dict[int, Pool] = {}  # uid -> pool, for eviction
        self.shared: dict[_uuid.UUID, Pool] = {}
        self.grants: dict[_uuid.UUID, set[str]] = {}
        self.eph_used = 0  # bytes charged for ephemeral pages
        self.pages = 0
        self.departed: dict[str, int] = {}  # counters of clients that left
        self._next_uid = 0
        self._next_cid = 0

    @property
    def used(self) -> int:
        """Real bytes held for pages: the store's bytes in use plus per-page metadata.

        Clients are charged per page they hold (``charged``); content the store
        shares between pages (deduplication) is counted once here.
        """
        return self.store.used_bytes + PAGE_METADATA_BYTES * self.pages

    @property
    def charged(self) -> int:
        """Bytes charged to clients: shared content counts once per page that holds it."""
        return sum(client.bytes for client in self.clients.values())

    # --- clients ---------------------------------------------------------

    def add_client(self, name: str, weight: int = 1, cap: int | None = None) -> ClientState:
        """Register a connected client; names are unique among live clients."""
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InvalidArgument(f"client name {name!r} must be a non-empty string of <= 255")
        if name in self.clients:
            raise InvalidArgument(f"a client named {name!r} is already connected")
        client = ClientState(name, self._next_cid, 1, None, self.table.new_list())
        self._next_cid += 1
        self._set_weight(client, weight)
        self._set_cap(client, cap)
        self.clients[name] = client
        return client

    def remove_client(self, client: ClientState) -> None:
        """The client leaves: it leaves every pool; its private pages are freed."""
        if not client.live:
            return
        for pool_id in list(client.pools):
            self.destroy_pool(client, pool_id)
        client.add_to(self.departed)
        for reason, n in client.rejects.items():
            key = "reject_" + reason
            self.departed[key] = self.departed.get(key, 0) + n
        self.table.release(client.lru)
        self.store.forget_client(client.cid)
        client.live = False
        del self.clients[client.name]

    def client(self, name: str) -> ClientState:
        """The live client called ``name``."""
        try:
            return self.clients[name]
        except KeyError:
            raise NoSuchClient(f"no client named {name!r} is connected") from None

    def set_client(
        self,
        name: str,
        weight: int | None = None,
        cap: Any = ...,
        frozen: bool | None = None,
    ) -> ClientState:
        """Change a client's weight, cap (None: unbounded) or frozen state."""
        client = self.client(name)
        if weight is not None:
            self._set_weight(client, weight)
        if cap is not ...:
            self._set_cap(client, cap)
            self.shrink_to_cap(client)
        if frozen is not None:
            client.frozen = bool(frozen)
        return client

    @staticmethod
    def _set_weight(client: ClientState, weight: Any) -> None:
        if type(weight) is not int or weight < 1:
            raise InvalidArgument(f"weight {weight!r} must be a positive integer")
        client.weight = weight

    @staticmethod
    def _set_cap(client: ClientState, cap: Any) -> None:
        if cap is not None and (type(cap) is not int or cap < 0):
            raise InvalidArgument(f"cap {cap!r} must be a byte count >= 0, or None")
        client.cap = cap

    @staticmethod
    def _check_capacity(capacity: Any) -> int:
        if type(capacity) is not int or capacity < 0:
            raise InvalidArgument(f"capacity {capacity!r} must be a byte count >= 0")
        return capacity

    def _apply_capacity(self, capacity: Any) -> None:
        self.capacity = self._check_capacity(capacity)
        # Below this usage no put needs eviction or meets the persistent share rule.
        self.calm_limit = capacity - capacity // PERSISTENT_HEADROOM

    def set_capacity(self, capacity: int) -> None:
        """Change the host's capacity; ephemeral pages are evicted until it fits."""
        self._apply_capacity(capacity)
        self.shrink_to_capacity()

    # --- shared-pool rights ---------------------------------------------

    def authorize_shared(self, name: str, uuid: _uuid.UUID) -> None:
        """Allow client ``name`` (connected or not) to create or join pool ``uuid``."""
        self.grants.setdefault(_check_uuid(uuid), set()).add(name)

    def revoke_shared(self, name: str, uuid: _uuid.UUID) -> None:
        """Withdraw the right; if ``name`` is in that pool now, it leaves it."""
        uuid = _check_uuid(uuid)
        self.grants.get(uuid, set()).discard(name)
        pool = self.shared.get(uuid)
        client = self.clients.get(name)
        if pool is not None and client is not None and client in pool.members:
            self.destroy_pool(client, pool.members[client])

    # --- pools -----------------------------------------------------------

    def new_pool(
        self,
        client: ClientState,
        persistent: bool = False,
        shared: bool = False,
        uuid: _uuid.UUID | None = None,
        page_size: int = 4096,
    ) -> int:
        """Create a pool (or join the shared pool ``uuid``); return the client's id for it."""
        page_size = check_page_size(page_size)
        persistent, shared = bool(persistent), bool(shared)
        if shared:
            uuid = _check_uuid(uuid)
            if client.name not in self.grants.get(uuid, ()):
                raise PermissionDenied(f"client {client.name!r} may not use shared pool {uuid}")
            pool = self.shared.get(uuid)
            if pool is not None:
                return self._join(client, pool, persistent, page_size)
        elif uuid is not None:
            raise InvalidArgument("a uuid names a shared pool; pass shared=True")
        pool = Pool(self._next_uid, client, persistent, shared, uuid, page_size)
        self._next_uid += 1
        self.pools[pool.uid] = pool
        if shared:
            self.shared[uuid] = pool
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

    def destroy_pool(self, client: ClientState, pool_id: int) -> None:
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
        del self.pools[pool.uid]
        if pool.shared:
            del self.shared[pool.uuid]

    def reassign(self, pool: Pool, owner: ClientState) -> None:
        """Charge a shared pool's pages to ``owner`` instead of its current owner."""
        old, table = pool.owner, self.table
        for pages in pool.objs.values():
            for pid in pages.values():
                cost = table.cost[pid]
                old.pages -= 1
                old.bytes -= cost
                owner.pages += 1
                owner.bytes += cost
                if not pool.persistent:
                    old.eph_bytes -= cost
                    owner.eph_bytes += cost
                    table.unlink(pid)
                    table.append(owner.lru, pid)
        pool.owner = owner

    # --- pages -----------------------------------------------------------

    def put(self, client: ClientState, pool_id: int, oid: int, index: int, data: Any) -> bool:
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
        if type(data) is not bytes or len(data) != pool.page_size:
            data = as_page(data, pool.page_size)
        client.puts += 1
        pool.puts += 1
        objs = pool.objs
        pages = objs.get(oid)
        if pages is not None:
            old = pages.get(index)
            if old is not None:
                answer = self._replace(client, pool, old, data)
                if answer is not None:
                    return answer
                self._remove(old, pool)
        if client.frozen:
            return self._reject(client, pool, "frozen")
        owner, store = pool.owner, self.store
        ref = store.put(data, pool.persistent, owner.cid)
        if ref < 0:
            return self._reject(client, pool, "store")
        cost = store.charge(ref) + PAGE_METADATA_BYTES
        # Far from every limit no rule of make_room can apply (the common case).
        if (
            owner.cap is not None
            or store.used_bytes + PAGE_METADATA_BYTES * (self.pages + 1) > self.calm_limit
        ):
            reason = self.make_room(owner, pool.persistent, cost)  # ref's bytes already in use
            if reason is not None:
                store.free(ref)
                return self._reject(client, pool, reason)
        table = self.table
        pid = table.alloc(ref, cost, pool.uid, oid, index)
        pages = objs.get(oid)  # eviction may have emptied and removed the object
        if pages is None:
            pages = objs[oid] = {}
        pages[index] = pid
        pool.pages += 1
        pool.bytes += cost
        owner.pages += 1
        owner.bytes += cost
        self.pages += 1
        if not pool.persistent:
            owner.eph_bytes += cost
            self.eph_used += cost
            table.append(owner.lru, pid)
        client.succ_puts += 1
        pool.succ_puts += 1
        return True

    def _replace(self, client: ClientState, pool: Pool, pid: int, data: Any) -> bool | None:
        """Overwrite page ``pid`` in place when no limit is near; None: take the long way.

        The same outcome as flushing the old page and putting the new one,
        without giving back and taking again the page id and its object slot.
        """
        owner, store = pool.owner, self.store
        if (
            client.frozen
            or owner.cap is not None
            # even a new page of a whole page_size more would leave every limit untouched
            or store.used_bytes + PAGE_METADATA_BYTES * self.pages + pool.page_size
            > self.calm_limit
        ):
            return None
        ref = store.put(data, pool.persistent, owner.cid)
        table = self.table
        if ref < 0:  # a refused duplicate put flushes the old page
            self._remove(pid, pool)
            return self._reject(client, pool, "store")
        store.free(table.ref[pid])
        cost = store.charge(ref) + PAGE_METADATA_BYTES
        delta = cost - table.cost[pid]
        table.ref[pid] = ref
        table.cost[pid] = cost
        pool.bytes += delta
        owner.bytes += delta
        if not pool.persistent:
            owner.eph_bytes += delta
            self.eph_used += delta
            table.touch(owner.lru, pid)
        client.succ_puts += 1
        pool.succ_puts += 1
        return True

    def _reject(self, client: ClientState, pool: Pool, reason: str) -> bool:
        client.failed_puts += 1
        pool.failed_puts += 1
        client.rejects[reason] += 1
        return False

    def get(self, client: ClientState, pool_id: int, oid: int, index: int) -> bytes | None:
        """A copy of the page at the handle, or None; private ephemeral gets take it away."""
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
        pages = pool.objs.get(oid)
        if pages is None:
            return None
        pid = pages.get(index)
        if pid is None:
            return None
        data = self.store.get(self._refs[pid])
        if pool.persistent:
            pass
        elif pool.shared:
            self.table.touch(pool.owner.lru, pid)
        else:
            self._remove(pid, pool)
        client.succ_gets += 1
        pool.succ_gets += 1
        return data

    def flush_page(self, client: ClientState, pool_id: int, oid: int, index: int) -> None:
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
                self._drop(pid, pool)  # inline rather than _remove: flush is a hot path

    def flush_object(self, client: ClientState, pool_id: int, oid: int) -> None:
        """Forget every page of the object."""
        pool = self.pool_of(client, pool_id)
        oid, _ = check_handle(oid, 0)
        client.flush_objects += 1
        pool.flush_objects += 1
        pages = pool.objs.pop(oid, None)
        if pages:
            for pid in pages.values():
                self._drop(pid, pool)

    def _remove(self, pid: int, pool: Pool) -> None:
        """Take page ``pid`` out of its object (dropping an emptied object) and free it."""
        table = self.table
        oid = table.oid[pid]
        pages = pool.objs[oid]
        del pages[table.index[pid]]
        if not pages:
            del pool.objs[oid]
        self._drop(pid, pool)

    def _drop(self, pid: int, pool: Pool) -> None:
        """Free a page already removed from its object's dict; undo its charges."""
        table = self.table
        cost = table.cost[pid]
        owner = pool.owner
        self.store.free(table.ref[pid])
        pool.pages -= 1
        pool.bytes -= cost
        owner.pages -= 1
        owner.bytes -= cost
        self.pages -= 1
        if not pool.persistent:
            owner.eph_bytes -= cost
            self.eph_used -= cost
            table.unlink(pid)
        table.release(pid)

    # --- statistics ------------------------------------------------------

    def client_stats(self, client: ClientState) -> dict[str, Any]:
        """The client's counters, charges and policy, and each of its pools'."""
        out: dict[str, Any] = client.counters()
        out.update(
            pages=client.pages,
            bytes=client.bytes,
            ephemeral_bytes=client.eph_bytes,
            weight=client.weight,
            cap=client.cap,
            frozen=client.frozen,
        )
        for reason, n in client.rejects.items():
            out["reject_" + reason] = n
        out["pools"] = {pid: pool.describe() for pid, pool in client.pools.items()}
        return out

    def host_stats(self) -> dict[str, Any]:
        """Totals over every client that ever connected, plus capacity and charges."""
        totals: dict[str, Any] = dict(self.departed)
        for reason in REJECT_REASONS:
            totals.setdefault("reject_" + reason, 0)
        for client in self.clients.values():
            client.add_to(totals)
            for reason, n in client.rejects.items():
                totals["reject_" + reason] += n
        charged = self.charged
        totals.update(
            capacity=self.capacity,
            pages=self.pages,
            bytes=self.used,
            ephemeral_bytes=self.eph_used,
            persistent_bytes=charged - self.eph_used,
            charged_bytes=charged,
            metadata_bytes_per_page=PAGE_METADATA_BYTES,
            pools=len(self.pools),
            clients={c.name: self.client_stats(c) for c in self.clients.values()},
        )
        return totals


def no_such_pool(client: ClientState, pool_id: Any) -> NoSuchPool:
    """The error for a pool id the client does not have."""
    return NoSuchPool(f"client {client.name!r} has no pool {pool_id!r}")


def _check_uuid(uuid: Any) -> _uuid.UUID:
    if not isinstance(uuid, _uuid.UUID):
        raise InvalidArgument(f"a shared pool needs a uuid.UUID, not {uuid!r}")
    return uuid


__all__ = ["Engine", "MAX_EVICTIONS_PER_PUT", "PAGE_METADATA_BYTES", "check_handle"]

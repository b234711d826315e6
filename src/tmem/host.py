"""The embedded host: the engine, a page store and one lock, in this process.

:class:`Host` is a thin shim: every rule lives in :class:`tmem.engine.Engine`;
the host adds a lock so that threads may share it, builds the page store, and
hands out :class:`HostClient` objects that implement :class:`tmem.api.Client`.
"""

from __future__ import annotations

import threading
import uuid as _uuid
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from tmem.api import DEFAULT_PAGE_SIZE, Stats, batch_item, settle_batch
from tmem.engine import Engine
from tmem.engine.ledger import DEFAULT_RESERVE
from tmem.engine.state import ClientState
from tmem.engine.tiering import Fetch
from tmem.errors import ConnectionLost, InvalidArgument, TmemError
from tmem.host_transfer import TransferMixin, track_calls
from tmem.policy import KEEP, ClientPolicy, check_compress
from tmem.store import PageStore, make_store
from tmem.tier import parse_tiers
from tmem.tier.demoter import TierSet
from tmem.units import parse_size


class Host(TransferMixin):
    """A tmem host of ``capacity`` bytes, shared by the clients it connects.

    ``compress`` is the default compression of new clients (``"lz4"``,
    ``"zstd"`` or None) and ``dedup`` the deduplication scope: ``"client"``
    (identical pages of one client stored once), ``"host"`` (across clients;
    this lets one client time another's puts, see docs/stores.md), None, or
    ``"auto"``: ``"client"`` if the host compresses, else None.  A host with
    neither stores pages raw and its clients cannot switch compression on.
    A ready-made ``store`` may be passed instead.

    The policy an administrator sets for a client name (:meth:`set_client`)
    is kept by name: it applies to the client connected under that name now
    and to every later client of that name, and wins over ``connect``'s
    arguments.

    ``tiers`` lists the stores below RAM, first first: ``"ssd:PATH:SIZE"``,
    ``"redis://HOST:PORT,..."`` or ready-made :class:`tmem.tier.Tier`
    objects.  Cold pages are demoted to them in the background (or only when
    :meth:`demote` is called, with ``demote_in_background=False``); call
    :meth:`close` to stop that and release the tiers.

    ``policy`` decides whose ephemeral page goes when the host is full:
    ``"utility"`` (each active client keeps its weighted share of ``reserve``
    of the capacity; above those floors the client whose lately evicted pages
    are missed least loses a page) or ``"share"`` (the client holding the most
    bytes per unit of weight).  ``order`` decides where a client's new page of
    a private ephemeral pool goes on its list: ``"adaptive"`` (per client,
    LRU or the *reuse* order that protects pages got lately and keeps part
    of a loop too long for LRU, whichever shadow lists of its handles say
    misses less) or ``"lru"`` (always the most recent end).  See
    docs/internals.md.
    """

    def __init__(
        self,
        capacity: int,
        compress: str | None = "lz4",
        dedup: str | None = "auto",
        store: PageStore | None = None,
        tiers: Iterable[Any] = (),
        demote_in_background: bool = True,
        policy: str = "utility",
        reserve: float = DEFAULT_RESERVE,
        order: str = "adaptive",
    ) -> None:
        self.store = store if store is not None else make_store(compress, dedup)
        self.compress = compress
        self.engine = Engine(
            self.store, _size(capacity, "capacity"), policy=policy, reserve=reserve, order=order
        )
        self.lock = threading.Lock()
        #: client name -> the policy the administrator set for it
        self.policies: dict[str, ClientPolicy] = {}
        self._compress: dict[str, str | None] = {}  # connected name -> its compression
        built = parse_tiers(tiers)
        self.tiers: TierSet | None = None
        if built:
            self.tiers = TierSet(self.engine, self.lock, built, demote_in_background)
        self._handles: dict[str, HostClient] = {}  # connected name -> its client object
        self._transfer_init()

    def connect(
        self,
        name: str,
        weight: int = 1,
        cap: int | None = None,
        compress: str | None | Any = ...,
    ) -> HostClient:
        """Register client ``name`` and return its handle (see :class:`tmem.api.Client`).

        If the administrator set a policy for ``name``, it replaces the
        weight, cap and compression given here, and the frozen state follows it.
        """
        with self.lock:
            parked = self._adopt(name)
            if parked is not None:
                return parked
            policy = self.policies.get(name)
            if policy is not None:
                weight, cap = policy.weight, policy.cap
                if policy.compress is not KEEP:
                    compress = policy.compress
            state = self.engine.add_client(name, weight, _size(cap, "cap"))
            try:
                self._configure(state, self.compress if compress is KEEP else compress)
                if policy is not None and policy.frozen:
                    self.engine.set_client(name, frozen=True)
            except BaseException:
                self.engine.remove_client(state)
                raise
            client = self._handles[name] = HostClient(self, state)
        return client

    def _adopt(self, name: str) -> HostClient | None:
        """The client restored or migrated here under ``name``, now claimed; None if none."""
        state = self.parked.get(name)
        if state is None:
            return None
        if name in self.incoming:
            raise InvalidArgument(f"client {name!r} is being moved here; try again shortly")
        del self.parked[name]
        client = self._handles[name] = HostClient(self, state)
        return client

    def _configure(self, state: ClientState, compress: str | None) -> None:
        self.store.configure_client(state.cid, compress)
        self._compress[state.name] = compress

    def _left(self, state: ClientState) -> None:
        """Forget what the host kept for a client that left (its policy stays)."""
        self._compress.pop(state.name, None)
        self._handles.pop(state.name, None)

    # --- administration (tmem.api.Admin) ----------------------------------

    def authorize_shared(self, client: str, uuid: _uuid.UUID) -> None:
        """Allow ``client`` to create or join the shared pool ``uuid``."""
        with self.lock:
            self.engine.authorize_shared(client, uuid)

    def revoke_shared(self, client: str, uuid: _uuid.UUID) -> None:
        """Withdraw that right; the client leaves the pool now if it is in it."""
        with self.lock:
            self.engine.revoke_shared(client, uuid)

    def set_capacity(self, capacity: int | str) -> None:
        """Change the bytes the host may spend (``2**30`` or ``"1G"``); ephemeral
        pages are evicted to fit."""
        size = _size(capacity, "capacity")
        with self.lock:
            self.engine.set_capacity(size)

    @property
    def capacity(self) -> int:
        """The bytes the host may spend on stored pages."""
        return self.engine.capacity

    def set_client(
        self,
        name: str,
        *,
        weight: int | None = None,
        cap: int | None | Any = ...,
        compress: str | None | Any = ...,
        frozen: bool | None = None,
    ) -> None:
        """Set client ``name``'s weight, cap (bytes, ``"64M"`` or None), compression
        or frozen state; settings left out keep their value.

        The host keeps the policy for that name: it applies now if the client
        is connected, and whenever a client of that name connects later.
        """
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"client name {name!r} must be a non-empty string")
        with self.lock:
            state = self.engine.clients.get(name)
            policy = self.policies.get(name) or self._policy_of(state)
            policy = policy.updated(weight=weight, cap=cap, compress=compress, frozen=frozen)
            if compress is not KEEP:
                self._check_store_accepts(policy.compress)
            if state is not None:
                if compress is not KEEP:
                    self._configure(state, policy.compress)
                self.engine.set_client(
                    name, weight=policy.weight, cap=policy.cap, frozen=policy.frozen
                )
            self.policies[name] = policy

    def _policy_of(self, state: ClientState | None) -> ClientPolicy:
        """The policy a connected client has now (before any administrator's)."""
        if state is None:
            return ClientPolicy()
        return ClientPolicy(state.weight, state.cap, KEEP, state.frozen)

    def _check_store_accepts(self, compress: str | None) -> None:
        """Raise InvalidArgument if the store cannot keep pages with ``compress``."""
        probe = -1  # no client has this id
        self.store.configure_client(probe, check_compress(compress))
        self.store.forget_client(probe)

    def forget_client(self, name: str) -> None:
        """Drop the policy kept for ``name``; a connected client keeps its settings."""
        with self.lock:
            self.policies.pop(name, None)

    def demote(self, all_pages: bool = False) -> int:
        """Run demotion now: until below the high watermark, or (``all_pages``) while
        any tier takes pages; return the pages moved.  A no-op without tiers."""
        if self.tiers is None:
            return 0
        return self.tiers.demote_all() if all_pages else self.tiers.settle()

    def close(self) -> None:
        """Stop demotion and release the tiers (the host keeps serving from RAM)."""
        if self.tiers is not None:
            self.tiers.close()

    def stats(self) -> Stats:
        """Host totals, capacity, the store's figures and every client's counters."""
        with self.lock:
            out = self.engine.host_stats()
            store = self.store.stats()
            grants = {str(u): sorted(names) for u, names in self.engine.grants.items() if names}
            out["parked"] = sorted(self.parked)
            compress = dict(self._compress)
            out["policies"] = {name: p.as_dict() for name, p in sorted(self.policies.items())}
        out["grants"] = grants
        if self.tiers is not None:
            out["tiers"] = self.tiers.stats()
        out["store"] = store
        orig = store.get("orig_data_size", 0)
        compr = store.get("compr_data_size", 0)
        out["compression_ratio"] = orig / compr if compr else 1.0
        logical = store.get("logical_pages", store.get("stored_pages", 0))
        unique = store.get("stored_pages", 0)
        out["dedup_ratio"] = logical / unique if unique else 1.0
        for name, client in out["clients"].items():
            client["compress"] = compress.get(name) or "none"
        return out


class HostClient:
    """A client of an embedded :class:`Host`; implements :class:`tmem.api.Client`."""

    def __init__(self, host: Host, state: ClientState) -> None:
        self.host = host
        self.name = state.name
        self._state = state
        self._engine = host.engine
        self._lock = host.lock
        # Bound once: the page calls are the hot path.
        self._acquire = host.lock.acquire
        self._release = host.lock.release
        self._put: Callable[..., bool] = host.engine.put
        self._get: Callable[..., bytes | Fetch | None] = host.engine.get
        self._flush: Callable[..., None] = host.engine.flush_page
        self._tiers = host.tiers
        self._flush_object: Callable[..., None] = host.engine.flush_object

    def new_pool(
        self,
        persistent: bool = False,
        shared: bool = False,
        uuid: _uuid.UUID | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> int:
        """Create (or join, for a shared uuid) a pool; return its id."""
        with self._lock:
            self._check_open()
            return self._engine.new_pool(self._state, persistent, shared, uuid, page_size)

    def page_size(self, pool: int) -> int:
        """The page size of pool ``pool``, or NoSuchPool."""
        with self._lock:
            return self._engine.pool_of(self._state, pool).page_size

    def holds_persistent_pages(self) -> bool:
        """Whether this client is in a persistent pool that holds pages."""
        with self._lock:
            return any(p.persistent and p.pages for p in self._state.pools.values())

    def destroy_pool(self, pool: int) -> None:
        """Leave the pool; its pages go once no client is left in it."""
        with self._lock:
            self._check_open()
            self._engine.destroy_pool(self._state, pool)

    def put_page(self, pool: int, oid: int, index: int, data: bytes) -> bool:
        """Copy ``data`` in; True if stored, False if the host refused it."""
        self._acquire()
        try:
            stored = self._put(self._state, pool, oid, index, data)
        finally:
            self._release()
        if self._tiers is not None:
            self._tiers.assist()
        return stored

    def get_page(self, pool: int, oid: int, index: int) -> bytes | None:
        """A copy of the page, or None on a miss."""
        self._acquire()  # start_get, inline: a get of a page in RAM is the hot path
        try:
            data = self._get(self._state, pool, oid, index)
        finally:
            self._release()
        if data.__class__ is Fetch:  # in a tier: read outside the lock
            return self.finish_get(data, pool, oid, index)  # type: ignore[arg-type]
        return data  # type: ignore[return-value]

    def start_get(self, pool: int, oid: int, index: int) -> bytes | Fetch | None:
        """The first half of :meth:`get_page`, for a caller that must not wait for a
        tier: the page, None (a miss), or for a page below RAM a :class:`Fetch`
        to pass to :meth:`finish_get` (which may block), in another thread if need be."""
        self._acquire()
        try:
            return self._get(self._state, pool, oid, index)
        finally:
            self._release()

    def finish_get(self, fetch: Fetch, pool: int, oid: int, index: int) -> bytes | None:
        """Finish a get of a demoted page: load it from its tier and apply the get's
        rules unless a put or flush changed it meanwhile (see :meth:`TierSet.fetch`)."""
        return self._tiers.fetch(  # type: ignore[union-attr]
            self._state, fetch, self._get, pool, oid, index
        )

    def put_pages(self, pool: int, pages: Iterable[Any], *, errors: str = "raise") -> list[Any]:
        """Put each ``(oid, index, data)`` in order, under one lock; True/False per page.

        Every item is tried.  With ``errors="raise"`` the first item's error is
        raised once all were tried; with ``errors="return"`` each error takes
        its item's place in the list.
        """
        put, state = self._put, self._state
        results: list[Any] = []
        with self._lock:
            self._check_open()
            if pool not in state.pools:  # one error for the whole batch, made once
                return settle_batch(_failed(self._engine, state, pool, pages), errors)
            append = results.append
            for item in pages:
                try:
                    if type(item) is not tuple or len(item) != 3:
                        item = batch_item(item, 3)
                    oid, index, data = item
                    append(put(state, pool, oid, index, data))
                except TmemError as exc:
                    append(exc)
        if self._tiers is not None:
            self._tiers.assist()
        return settle_batch(results, errors)

    def get_pages(self, pool: int, handles: Iterable[Any], *, errors: str = "raise") -> list[Any]:
        """Get each ``(oid, index)`` in order, under one lock; bytes or None per page.

        Errors are handled as by :meth:`put_pages`.
        """
        results, fetches = self.start_get_pages(pool, handles)
        self.finish_get_pages(pool, results, fetches)  # outside the lock, as get_page
        return settle_batch(results, errors)

    def start_get_pages(
        self, pool: int, handles: Iterable[Any]
    ) -> tuple[list[Any], list[tuple[int, Fetch, int, int]]]:
        """The first half of :meth:`get_pages`: each item's bytes, None or error, and
        for each page below RAM ``(position, fetch, oid, index)`` (its place in the
        results holds the :class:`Fetch`) for :meth:`finish_get_pages`."""
        get, state = self._engine.get, self._state
        results: list[Any] = []
        fetches: list[tuple[int, Fetch, int, int]] = []
        with self._lock:
            self._check_open()
            if pool not in state.pools:
                return _failed(self._engine, state, pool, handles), fetches
            append = results.append
            for item in handles:
                try:
                    if type(item) is not tuple or len(item) != 2:
                        item = batch_item(item, 2)
                    oid, index = item
                    data = get(state, pool, oid, index)
                    if data.__class__ is Fetch:
                        fetches.append((len(results), data, oid, index))  # type: ignore[arg-type]
                    append(data)
                except TmemError as exc:
                    append(exc)
        return results, fetches

    def finish_get_pages(
        self, pool: int, results: list[Any], fetches: list[tuple[int, Fetch, int, int]]
    ) -> None:
        """Put in ``results`` the pages :meth:`start_get_pages` left in tiers (or their
        errors), loading them without the host's lock."""
        for at, fetch, oid, index in fetches:
            try:
                results[at] = self.finish_get(fetch, pool, oid, index)
            except TmemError as exc:
                results[at] = exc

    def flush_page(self, pool: int, oid: int, index: int) -> None:
        """Forget the page; later gets miss."""
        self._acquire()
        try:
            self._flush(self._state, pool, oid, index)
        finally:
            self._release()

    def flush_object(self, pool: int, oid: int) -> None:
        """Forget every page of the object."""
        with self._lock:
            self._check_open()
            self._flush_object(self._state, pool, oid)

    def stats(self) -> Stats:
        """This client's counters, with each pool's under ``"pools"``."""
        with self._lock:
            self._check_open()
            return self.host.engine.describe_client(self._state)

    def close(self) -> None:
        """Leave the host: private pools and their pages are released.

        Every later call raises ConnectionLost, as a remote client's does;
        closing again does nothing.
        """
        with self._lock:
            if self._state.live:
                self._engine.remove_client(self._state)
                self.host._left(self._state)
            # The page calls check nothing on their hot path: they are rebound instead.
            self._put = self._get = self._flush = self._closed

    def _track(self, dirty: set) -> None:
        """Record the handles this client's calls change into ``dirty`` (an export runs)."""
        track_calls(self, dirty)

    def _untrack(self) -> None:
        engine = self._engine
        self._put, self._flush, self._flush_object = (
            engine.put, engine.flush_page, engine.flush_object
        )

    def _check_open(self) -> None:
        if not self._state.live:
            self._closed()

    def _closed(self, *args: object) -> NoReturn:
        raise ConnectionLost(f"client {self.name!r} was closed")

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tmem.HostClient {self.name!r}>"


def _size(value: Any, what: str) -> Any:
    """A byte count given as text (``"1G"``) as an int; other values go to the engine's checks."""
    if isinstance(value, str):
        try:
            return parse_size(value)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{what}: {exc}") from None
    return value


def _failed(engine: Engine, state: ClientState, pool: Any, items: Iterable[Any]) -> list[Any]:
    """One NoSuchPool error, in the place of every item of a batch."""
    try:
        engine.pool_of(state, pool)
    except TmemError as exc:
        return [exc for _ in items]
    raise AssertionError("the pool exists")

"""The embedded host: the engine, a page store and one lock, in this process.

:class:`Host` is a thin shim: every rule lives in :class:`tmem.engine.Engine`;
the host adds a lock so that threads may share it, builds the page store, and
hands out :class:`HostClient` objects that implement :class:`tmem.api.Client`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from tmem.api import Stats
from tmem.arguments import DEFAULT_PAGE_SIZE, batch_item, check_name, settle_batch
from tmem.engine import Engine
from tmem.engine.ledger import DEFAULT_RESERVE
from tmem.engine.state import ClientState
from tmem.engine.tiering import Fetch
from tmem.errors import ConnectionLost, InvalidArgument, TmemError
from tmem.host_transfer import Key, TransferMixin
from tmem.hostlock import new_lock
from tmem.policy import KEEP, ClientPolicy, check_compress
from tmem.store import PageStore, make_store
from tmem.tier import parse_tiers
from tmem.tier.demoter import TierSet
from tmem.units import parse_size
from tmem.wire.messages import ITEM_SIZE, iter_items, unpack_item


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
    misses less) or ``"lru"`` (always the most recent end).  ``eviction``
    decides which of a client's ephemeral pages goes: ``"lru"`` (the least
    recent) or ``"frequency"`` (of its 64 next to go, the one got least often
    lately, :mod:`tmem.engine.frequency`).  See docs/internals.md.
    """

    def __init__(
        self,
        capacity: Any,
        compress: Any = "lz4",
        dedup: Any = "auto",
        store: PageStore | None = None,
        tiers: Iterable[Any] = (),
        demote_in_background: Any = True,
        policy: Any = "utility",
        reserve: Any = DEFAULT_RESERVE,
        order: Any = "adaptive",
        eviction: Any = "lru",
    ) -> None:
        self.store = store if store is not None else make_store(compress, dedup)
        self.compress = compress
        self.engine = Engine(
            self.store,
            _size(capacity, "capacity"),
            policy=policy,
            reserve=reserve,
            order=order,
            eviction=eviction,
        )
        self.lock = new_lock()
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
        name: Any,
        weight: Any = 1,
        cap: Any = None,
        compress: Any = ...,
    ) -> HostClient:
        """Register client ``name`` and return its handle (see :class:`tmem.api.Client`).

        If the administrator set a policy for ``name``, it replaces the
        weight, cap and compression given here, and the frozen state follows it.
        """
        check_name(name)
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

    def _adopt(self, name: Any) -> HostClient | None:
        """The client restored or migrated here under ``name``, now claimed; None if none."""
        state = self.parked.get(name)
        if state is None:
            return None
        if name in self.incoming:
            raise InvalidArgument(f"client {name!r} is being moved here; try again shortly")
        del self.parked[name]
        client = self._handles[name] = HostClient(self, state)
        return client

    def _configure(self, state: ClientState, compress: Any) -> None:
        self.store.configure_client(state.cid, compress)
        self._compress[state.name] = compress

    def _left(self, state: ClientState) -> None:
        """Forget what the host kept for a client that left (its policy stays)."""
        self._compress.pop(state.name, None)
        self._handles.pop(state.name, None)

    # --- administration (tmem.api.Admin) ----------------------------------

    def authorize_shared(self, client: Any, uuid: Any) -> None:
        """Allow ``client`` to create or join the shared pool ``uuid``."""
        check_name(client)
        with self.lock:
            self.engine.authorize_shared(client, uuid)

    def revoke_shared(self, client: Any, uuid: Any) -> None:
        """Withdraw that right; the client leaves the pool now if it is in it."""
        check_name(client)
        with self.lock:
            self.engine.revoke_shared(client, uuid)

    def set_capacity(self, capacity: Any) -> None:
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
        name: Any,
        *,
        weight: Any = None,
        cap: Any = ...,
        compress: Any = ...,
        frozen: Any = None,
    ) -> None:
        """Set client ``name``'s weight, cap (bytes, ``"64M"`` or None), compression
        or frozen state; settings left out keep their value.

        The host keeps the policy for that name: it applies now if the client
        is connected, and whenever a client of that name connects later.
        """
        check_name(name)
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

    def forget_client(self, name: Any) -> None:
        """Drop the policy kept for ``name``; a connected client keeps its settings."""
        check_name(name)
        with self.lock:
            self.policies.pop(name, None)

    def demote(self, all_pages: Any = False) -> int:
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
    """A client of an embedded :class:`Host`; implements :class:`tmem.api.Client`.

    Compiled with the engine (setup.py): a page call is a native call into the
    engine between the lock's acquire and release, after a check that the
    client is still connected.  Arguments are ``Any`` at this boundary and are
    checked by the engine, so bad input raises InvalidArgument or NoSuchPool in
    the compiled build as in pure Python.
    """

    def __init__(self, host: Host, state: ClientState) -> None:
        self.host = host
        self.name = state.name
        self._state = state
        self._engine = host.engine
        self._lock = host.lock
        # Bound once: the page calls are the hot path.
        self._acquire: Callable[[], object] = host.lock.acquire
        self._release: Callable[[], object] = host.lock.release
        self._tiers = host.tiers
        #: The handles an export of this client records as they change (None: none under way).
        self._dirty: set[Key] | None = None

    def new_pool(
        self,
        persistent: Any = False,
        shared: Any = False,
        uuid: Any = None,
        page_size: Any = DEFAULT_PAGE_SIZE,
    ) -> int:
        """Create (or join, for a shared uuid) a pool; return its id."""
        with self._lock:
            self._check_open()
            return self._engine.new_pool(self._state, persistent, shared, uuid, page_size)

    def page_size(self, pool: Any) -> int:
        """The page size of pool ``pool``, or NoSuchPool."""
        with self._lock:
            return self._engine.pool_of(self._state, pool).page_size

    def holds_persistent_pages(self) -> bool:
        """Whether this client is in a persistent pool that holds pages."""
        with self._lock:
            return any(p.persistent and p.pages for p in self._state.pools.values())

    def destroy_pool(self, pool: Any) -> None:
        """Leave the pool; its pages go once no client is left in it."""
        with self._lock:
            self._check_open()
            self._engine.destroy_pool(self._state, pool)

    def put_page(self, pool: Any, oid: Any, index: Any, data: Any) -> bool:
        """Copy ``data`` in; True if stored, False if the host refused it."""
        state = self._state
        self._acquire()
        try:
            if not state.live:
                self._closed()
            stored = self._engine.put(state, pool, oid, index, data)
            if self._dirty is not None:  # recorded once the engine accepted the handle
                self._dirty.add((pool, oid, index))
        finally:
            self._release()
        if self._tiers is not None:
            self._tiers.assist()
        return stored

    def get_page(self, pool: Any, oid: Any, index: Any) -> bytes | None:
        """A copy of the page, or None on a miss."""
        data = self.start_get(pool, oid, index)
        if isinstance(data, Fetch):  # in a tier: read outside the lock
            return self.finish_get(data, pool, oid, index)
        return data

    def start_get(self, pool: Any, oid: Any, index: Any) -> bytes | Fetch | None:
        """The first half of :meth:`get_page`, for a caller that must not wait for a
        tier: the page, None (a miss), or for a page below RAM a :class:`Fetch`
        to pass to :meth:`finish_get` (which may block), in another thread if need be."""
        state = self._state
        self._acquire()
        try:
            if not state.live:
                self._closed()
            return self._engine.get(state, pool, oid, index)
        finally:
            self._release()

    def finish_get(self, fetch: Fetch, pool: Any, oid: Any, index: Any) -> bytes | None:
        """Finish a get of a demoted page: load it from its tier and apply the get's
        rules unless a put or flush changed it meanwhile (see :meth:`TierSet.fetch`)."""
        assert self._tiers is not None, "a Fetch comes only from a host with tiers"
        return self._tiers.fetch(self._state, fetch, pool, oid, index)

    def put_pages(self, pool: Any, pages: Iterable[Any], *, errors: Any = "raise") -> list[Any]:
        """Put each ``(oid, index, data)`` in order, under one lock; True/False per page.

        Every item is tried.  With ``errors="raise"`` the first item's error is
        raised once all were tried; with ``errors="return"`` each error takes
        its item's place in the list.
        """
        engine, state, dirty = self._engine, self._state, self._dirty
        results: list[Any] = []
        with self._lock:
            self._check_open()
            if not _known(state, pool):  # one error for the whole batch, made once
                return settle_batch(_failed(engine, state, pool, pages), errors)
            append = results.append
            for item in pages:
                try:
                    if type(item) is not tuple or len(item) != 3:
                        item = batch_item(item, 3)
                    oid, index, data = item
                    append(engine.put(state, pool, oid, index, data))
                    if dirty is not None:
                        dirty.add((pool, oid, index))
                except TmemError as exc:
                    append(exc)
        if self._tiers is not None:
            self._tiers.assist()
        return settle_batch(results, errors)

    def put_packed(
        self, pool: Any, buffer: Any, first: int, count: int, page_size: int
    ) -> list[Any]:
        """Put ``count`` pages packed in ``buffer`` from offset ``first`` as a batch's
        items lie in a frame (:mod:`tmem.wire.messages`: the object id in 24 bytes and
        the index in 4, little-endian, then ``page_size`` bytes of page), in order,
        under one lock: True/False or the error per page, as :meth:`put_pages` with
        ``errors="return"``.  Each page is a view into ``buffer``, and no item object
        is made per page first (the daemon's batches).  InvalidArgument if ``buffer``
        does not hold them all.
        """
        engine, state, dirty = self._engine, self._state, self._dirty
        step = ITEM_SIZE + page_size
        stop = first + count * step
        _check_packed(buffer, first, count, stop)
        results: list[Any] = []
        with self._lock:
            self._check_open()
            if not _known(state, pool):
                return _failed(engine, state, pool, range(count))
            append = results.append
            for pos in range(first, stop, step):
                low, mid, high, index = unpack_item(buffer, pos)
                oid = low | mid << 64 | high << 128 if mid or high else low
                try:
                    append(
                        engine.put(state, pool, oid, index, buffer[pos + ITEM_SIZE : pos + step])
                    )
                    if dirty is not None:
                        dirty.add((pool, oid, index))
                except TmemError as exc:
                    append(exc)
        if self._tiers is not None:
            self._tiers.assist()
        return results

    def get_pages(self, pool: Any, handles: Iterable[Any], *, errors: Any = "raise") -> list[Any]:
        """Get each ``(oid, index)`` in order, under one lock; bytes or None per page.

        Errors are handled as by :meth:`put_pages`.
        """
        results, fetches = self.start_get_pages(pool, handles)
        self.finish_get_pages(pool, results, fetches)  # outside the lock, as get_page
        return settle_batch(results, errors)

    def start_get_pages(
        self, pool: Any, handles: Iterable[Any]
    ) -> tuple[list[Any], list[tuple[int, Fetch, Any, Any]]]:
        """The first half of :meth:`get_pages`: each item's bytes, None or error, and
        for each page below RAM ``(position, fetch, oid, index)`` (its place in the
        results holds the :class:`Fetch`) for :meth:`finish_get_pages`."""
        engine, state = self._engine, self._state
        results: list[Any] = []
        fetches: list[tuple[int, Fetch, Any, Any]] = []
        with self._lock:
            self._check_open()
            if not _known(state, pool):
                return _failed(engine, state, pool, handles), fetches
            append = results.append
            for item in handles:
                try:
                    if type(item) is not tuple or len(item) != 2:
                        item = batch_item(item, 2)
                    oid, index = item
                    data = engine.get(state, pool, oid, index)
                    if isinstance(data, Fetch):
                        fetches.append((len(results), data, oid, index))
                    append(data)
                except TmemError as exc:
                    append(exc)
        return results, fetches

    def start_get_packed(
        self, pool: Any, buffer: Any, first: int, count: int
    ) -> tuple[list[Any], list[tuple[int, Fetch, Any, Any]]]:
        """:meth:`start_get_pages` of ``count`` handles packed in ``buffer`` from offset
        ``first`` as a batch's items lie in a frame (see :meth:`put_packed`), with no
        item object made per handle first.  InvalidArgument if ``buffer`` does not
        hold them all."""
        engine, state = self._engine, self._state
        stop = first + count * ITEM_SIZE
        _check_packed(buffer, first, count, stop)
        results: list[Any] = []
        fetches: list[tuple[int, Fetch, Any, Any]] = []
        with self._lock:
            self._check_open()
            if not _known(state, pool):
                return _failed(engine, state, pool, range(count)), fetches
            append = results.append
            for low, mid, high, index in iter_items(buffer[first:stop]):
                oid = low | mid << 64 | high << 128 if mid or high else low
                try:
                    data = engine.get(state, pool, oid, index)
                    if isinstance(data, Fetch):
                        fetches.append((len(results), data, oid, index))
                    append(data)
                except TmemError as exc:
                    append(exc)
        return results, fetches

    def finish_get_pages(
        self, pool: Any, results: list[Any], fetches: list[tuple[int, Fetch, Any, Any]]
    ) -> None:
        """Put in ``results`` the pages :meth:`start_get_pages` left in tiers (or their
        errors), loading them without the host's lock."""
        for at, fetch, oid, index in fetches:
            try:
                results[at] = self.finish_get(fetch, pool, oid, index)
            except TmemError as exc:
                results[at] = exc

    def flush_page(self, pool: Any, oid: Any, index: Any) -> None:
        """Forget the page; later gets miss."""
        state = self._state
        self._acquire()
        try:
            if not state.live:
                self._closed()
            self._engine.flush_page(state, pool, oid, index)
            if self._dirty is not None:
                self._dirty.add((pool, oid, index))
        finally:
            self._release()

    def flush_object(self, pool: Any, oid: Any) -> None:
        """Forget every page of the object."""
        with self._lock:
            self._check_open()
            self._engine.flush_object(self._state, pool, oid)
            if self._dirty is not None:
                self._dirty.add((pool, oid, None))

    def stats(self) -> Stats:
        """This client's counters, with each pool's under ``"pools"``."""
        with self._lock:
            self._check_open()
            return self._engine.describe_client(self._state)

    def close(self) -> None:
        """Leave the host: private pools and their pages are released.

        Every later call raises ConnectionLost, as a remote client's does;
        closing again does nothing.
        """
        with self._lock:
            if self._state.live:
                self._engine.remove_client(self._state)
                self.host._left(self._state)

    def _track(self, dirty: set[Key] | None) -> None:
        """Record the handles this client's calls change into ``dirty`` (an export runs;
        None: stop recording)."""
        self._dirty = dirty

    def _check_open(self) -> None:
        if not self._state.live:
            self._closed()

    def _closed(self) -> NoReturn:
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


def _known(state: ClientState, pool: Any) -> bool:
    """Whether ``pool`` is one of the client's pool ids (False for what cannot be one)."""
    try:
        return pool in state.pools
    except TypeError:  # unhashable
        return False


def _check_packed(buffer: Any, first: int, count: int, stop: int) -> None:
    """InvalidArgument unless ``buffer`` holds ``count`` packed items from ``first`` to ``stop``."""
    if first < 0 or count < 0 or stop > len(buffer):
        raise InvalidArgument(
            f"{count} packed items from {first} overrun a {len(buffer)}-byte buffer"
        )


def _failed(engine: Engine, state: ClientState, pool: Any, items: Iterable[Any]) -> list[Any]:
    """One NoSuchPool error, in the place of every item of a batch."""
    try:
        engine.pool_of(state, pool)
    except TmemError as exc:
        return [exc for _ in items]
    raise AssertionError("the pool exists")

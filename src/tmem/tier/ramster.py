"""RAMster on a Redis Cluster: cold pages kept in other machines' spare memory.

The nodes of a Redis Cluster are the participating machines; the cluster
client of the ``redis`` package (:class:`redis.cluster.RedisCluster`) routes
each key to the primary that owns its slot and follows failovers.

* Each demotion batch is one pipeline to one primary: its keys share a hash
  tag, ``tmem:{HOST.BATCH}:VERSION``.  The host keeps only the batch number
  (the page's location) next to the version it already has, so a get
  rebuilds the key and fetches it in one round trip.
* Ephemeral pages are written with an expiry (volatile keys), so a cluster
  run with ``maxmemory-policy volatile-lru`` (or ``volatile-ttl``) may drop
  them under its own memory pressure; a get then misses.  Persistent pages
  have no expiry and are never evicted; when the cluster refuses writes (out
  of memory) the tier stops taking pages for :attr:`ClusterTier.retry_interval`.
* A batch holding persistent pages ends with ``WAIT replicas timeout`` on the
  same connection: its persistent pages count as stored only once a replica
  confirmed them, so losing one machine loses no persistent page.  Pages
  not confirmed are refused (they stay in RAM) and their keys deleted.
* A get asks the primary that owns the batch's slot directly, which the tier
  remembers per batch: one command, one round trip, none of the cluster
  client's per-command routing.  It sends ``GET`` and reads the reply on a
  ``redis`` connection of that primary's own (the ``hiredis`` parser where
  installed), taken from the tier's idle ones and given back once the reply
  was read whole: none of the connection pool's bookkeeping per command
  (its lock, its metrics, its poll of the socket for stray data), which costs
  more CPU than the round trip.  A reply that the slot moved (failover,
  resharding) makes the tier forget those connections and re-read the map of
  slots, as any failure does.
* A get that meets a failing or failing-over node retries with backoff for
  up to ``fetch_timeout`` seconds, then raises :class:`tmem.TierError`.  An
  unreachable cluster is reported unhealthy at once: the host stops demoting
  to it and serves from RAM; reconnection is tried every ``retry_interval``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, cast
from weakref import WeakSet

from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError
from redis.retry import Retry

from tmem.errors import InvalidArgument, TierError
from tmem.tier.base import Demotion

log = logging.getLogger("tmem.tier")

#: How long an ephemeral page lives in the cluster at most (seconds): it makes the key volatile.
EPHEMERAL_TTL = 7 * 86400
#: Batches whose primary's connection is remembered, at most (then the memory starts over).
MAX_OWNERS = 1 << 16


class _Primary:
    """One primary's connections for gets: ``redis`` connections made as its client's
    pool makes them, each used by one get at a time, and kept idle between gets.
    A child process made by ``fork()`` starts with none idle: the parent's stay the
    parent's (a reply could otherwise reach the wrong process)."""

    __slots__ = ("__weakref__", "closed", "idle", "kwargs", "make", "port")

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self.make = pool.connection_class
        self.kwargs = dict(pool.connection_kwargs)
        self.port: int = self.kwargs.get("port", 0)
        self.idle: list[Any] = []
        self.closed = False
        _PRIMARIES.add(self)

    def get(self, key: str) -> bytes | None:
        """``GET key`` in one round trip; RedisError or OSError if it fails (the
        connection is closed then: a reply may be left unread on it).  A connection
        that was idle and is found closed (the node closed it meanwhile) is replaced
        once, as the ``redis`` client's own retry would."""
        try:
            conn = self.idle.pop()
            reused = True
        except IndexError:  # none idle: this get runs beside others
            conn, reused = self.make(**self.kwargs), False
        while True:
            try:
                conn.send_command("GET", key)
                value = conn.read_response()
                break
            except RedisConnectionError:
                conn.disconnect()
                if not reused:
                    raise
                conn, reused = self.make(**self.kwargs), False
            except BaseException:
                conn.disconnect()
                raise
        if self.closed:
            conn.disconnect()
        else:
            self.idle.append(conn)
        return cast("bytes | None", value)

    def close(self) -> None:
        """Close the idle connections, and those of gets under way as they end."""
        self.closed = True
        while self.idle:
            with contextlib.suppress(IndexError, RedisError, OSError):
                self.idle.pop().disconnect()


#: Every primary's connections in this process, to be left behind by a forked child.
_PRIMARIES: WeakSet[_Primary] = WeakSet()


def _forget_in_child() -> None:
    """In a child made by ``fork()``: forget the idle connections inherited (their
    sockets close in the child only; the parent keeps using its own)."""
    for primary in list(_PRIMARIES):
        primary.idle = []


os.register_at_fork(after_in_child=_forget_in_child)


class ClusterTier:
    """Pages in a Redis Cluster reached through ``nodes`` (``[(host, port), ...]``)."""

    name = "redis"
    #: The location is a batch number in the host's page table: nothing more per page.
    index_bytes_per_page = 0

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        replicas: int = 1,
        wait_timeout: float = 0.5,
        fetch_timeout: float = 2.0,
        retry_interval: float = 1.0,
        socket_timeout: float = 1.0,
        ephemeral_ttl: int = EPHEMERAL_TTL,
        prefix: str | None = None,
    ) -> None:
        if not nodes:
            raise InvalidArgument("a Redis Cluster tier needs at least one HOST:PORT")
        timeouts = {
            "wait_timeout": wait_timeout,
            "fetch_timeout": fetch_timeout,
            "retry_interval": retry_interval,
            "socket_timeout": socket_timeout,
        }
        for what, value in timeouts.items():
            if type(value) not in (int, float) or not 0 < value < 3600:
                raise InvalidArgument(f"{what} {value!r} must be seconds in (0, 3600)")
        if wait_timeout >= socket_timeout:
            raise InvalidArgument("wait_timeout must be shorter than socket_timeout")
        if type(replicas) is not int or replicas < 0:
            raise InvalidArgument(f"replicas {replicas!r} must be an integer >= 0")
        self.nodes = [ClusterNode(host, port) for host, port in nodes]
        self.replicas = replicas
        self.wait_ms = int(wait_timeout * 1000)
        self.fetch_timeout = fetch_timeout
        self.retry_interval = retry_interval
        self.socket_timeout = socket_timeout
        self.ttl = ephemeral_ttl
        #: This host's keys start with it; random, so a restarted host never reads old keys.
        self.prefix = prefix or secrets.token_hex(8)
        self.lock = threading.Lock()
        self._cluster: RedisCluster | None = None
        self._next_try = 0.0
        self._refusing_until = 0.0
        self._given_up_until = 0.0
        self.failure: str | None = None
        self._batch = 0
        #: Batch number -> the primary that holds it (cleared on a failure).
        self._owners: dict[int, _Primary] = {}
        #: The primaries met so far, by node name (cleared on a failure).
        self._primaries: dict[str, _Primary] = {}
        self.pages = 0
        self.counters = dict.fromkeys(
            ("stored", "refused", "unconfirmed", "loads", "load_retries", "load_failures",
             "lost", "write_failures", "reconnects", "bytes_written"), 0)  # fmt: skip
        self._connect()

    # --- the connection ------------------------------------------------------

    def _connect(self) -> RedisCluster | None:
        """The cluster client, (re)built if due; None while the cluster is unreachable."""
        if self._cluster is not None:
            return self._cluster
        now = time.monotonic()
        if now < self._next_try:
            return None
        self._next_try = now + self.retry_interval
        try:
            self._cluster = RedisCluster(
                startup_nodes=list(self.nodes),
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
                retry=Retry(NoBackoff(), 1),
                require_full_coverage=True,
                dynamic_startup_nodes=False,
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            self._down(exc)
            return None
        self.counters["reconnects"] += 1
        self.failure = None
        return self._cluster

    def _down(self, exc: BaseException) -> None:
        """Record a failure; the client is rebuilt (topology re-read) on the next try."""
        self.failure = f"{type(exc).__name__}: {exc}"
        log.warning("redis tier: %s", self.failure)
        self._owners = {}
        primaries, self._primaries = self._primaries, {}
        for primary in primaries.values():
            primary.close()
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            with contextlib.suppress(RedisError, OSError):
                cluster.close()

    @property
    def healthy(self) -> bool:
        """True if the cluster was reachable at the last try and is taking writes."""
        return self.failure is None and time.monotonic() >= self._refusing_until

    def key(self, loc: int, tag: int) -> str:
        """The key of version ``tag`` in batch ``loc``: one hash tag per batch."""
        return f"tmem:{{{self.prefix}.{loc}}}:{tag}"

    # --- the tier interface ------------------------------------------------------

    def store(self, batch: Sequence[Demotion]) -> list[int | None]:
        """Write the batch to one primary; persistent pages count once a replica has them."""
        refused: list[int | None] = [None] * len(batch)
        with self.lock:
            cluster = self._connect()
            if cluster is None or time.monotonic() < self._refusing_until or not batch:
                self.counters["refused"] += len(batch)
                return refused
            loc = self._batch
            self._batch += 1
        keys = [self.key(loc, item.tag) for item in batch]
        persistent = any(item.persistent for item in batch)
        try:
            node = cluster.get_node_from_key(keys[0])
            pipe = cluster.get_redis_connection(node).pipeline(transaction=False)
            for key, item in zip(keys, batch, strict=True):
                pipe.set(key, item.payload, ex=None if item.persistent else self.ttl)
            if persistent:
                pipe.execute_command("WAIT", self.replicas, self.wait_ms)
            replies = pipe.execute(raise_on_error=False)
        except (RedisError, RedisClusterException, OSError) as exc:
            with self.lock:
                self.counters["write_failures"] += 1
                self.counters["refused"] += len(batch)
                self._down(exc)
            return refused
        acked = replies[-1] if persistent else self.replicas
        confirmed = isinstance(acked, int) and acked >= self.replicas
        out: list[int | None] = []
        undo: list[str] = []
        with self.lock:
            for key, item, reply in zip(keys, batch, replies, strict=False):
                if isinstance(reply, Exception):
                    self._refuse_writes(reply)
                    out.append(None)
                elif item.persistent and not confirmed:
                    undo.append(key)
                    out.append(None)
                else:
                    out.append(loc)
                    self.pages += 1
                    self.counters["bytes_written"] += len(item.payload)
            stored = sum(1 for x in out if x is not None)
            self.counters["stored"] += stored
            self.counters["refused"] += len(batch) - stored
            self.counters["unconfirmed"] += len(undo)
        if undo:
            self._delete(cluster, undo)
        return out

    def _refuse_writes(self, reply: Exception) -> None:
        """The cluster refused a write: pause demotion a while; re-read the topology if moved."""
        self.counters["write_failures"] += 1
        self._refusing_until = time.monotonic() + self.retry_interval
        if not isinstance(reply, OutOfMemoryError):
            self._down(reply)  # MOVED, CLUSTERDOWN, READONLY: the map of slots is stale
        log.warning("redis tier refused a write: %s", reply)

    def _delete(self, cluster: RedisCluster, keys: list[str]) -> None:
        try:
            for key in keys:
                cluster.delete(key)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("redis tier: could not delete %d keys: %s", len(keys), exc)

    def _owner(self, cluster: RedisCluster, loc: int, key: str) -> _Primary:
        """The primary that holds batch ``loc`` (looked up once per batch)."""
        owners = self._owners
        owner = owners.get(loc)
        if owner is None:
            node = cluster.get_node_from_key(key)
            with self.lock:
                owner = self._primaries.get(node.name)
                if owner is None:
                    owner = _Primary(cluster.get_redis_connection(node))
                    self._primaries[node.name] = owner
                if len(owners) >= MAX_OWNERS:
                    owners.clear()
                owners[loc] = owner
        return owner

    def load(self, loc: int, tag: int) -> bytes | None:
        """Fetch one page in one round trip, retrying through a failover for a bounded time.

        The primary that holds a batch is looked up once and remembered until a
        failure re-reads the map of slots.  After a fetch has run out of time,
        later ones fail at once for ``retry_interval`` seconds rather than each
        waiting its full bound.
        """
        key = self.key(loc, tag)
        with self.lock:
            self.counters["loads"] += 1
            cluster = self._cluster
            owner = self._owners.get(loc) if cluster is not None else None
            if owner is None and time.monotonic() < self._given_up_until:
                self.counters["load_failures"] += 1
                raise TierError(f"redis tier unreachable ({self.failure})")
        if owner is not None:  # the common case: one command to a primary known already
            try:
                value = owner.get(key)
            except (RedisError, RedisClusterException, OSError) as exc:
                with self.lock:  # re-read the map of slots, then retry as below
                    self._down(exc)
            else:
                if value is None:
                    with self.lock:
                        self.counters["lost"] += 1
                return value
        return self._load_slowly(loc, key)

    def _load_slowly(self, loc: int, key: str) -> bytes | None:
        """:meth:`load` through the cluster client, reconnecting and retrying until the
        fetch timeout."""
        now = time.monotonic()
        deadline = now + self.fetch_timeout
        pause = 0.01
        with self.lock:
            if now < self._given_up_until:
                self.counters["load_failures"] += 1
                raise TierError(f"redis tier unreachable ({self.failure})")
        while True:
            with self.lock:
                cluster = self._connect()
            if cluster is not None:
                try:
                    # Replies are not decoded (decode_responses is off): bytes.
                    value = self._owner(cluster, loc, key).get(key)
                except (RedisError, RedisClusterException, OSError) as exc:
                    with self.lock:
                        self._down(exc)
                else:
                    if value is None:
                        with self.lock:
                            self.counters["lost"] += 1
                    return value
            if time.monotonic() + pause > deadline:
                break
            with self.lock:
                self.counters["load_retries"] += 1
                self._next_try = 0.0  # inside a fetch, reconnect at once
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        with self.lock:
            self.counters["load_failures"] += 1
            self._given_up_until = time.monotonic() + self.retry_interval
        raise TierError(f"redis tier: no answer within {self.fetch_timeout}s ({self.failure})")

    def free(self, pages: Sequence[tuple[int, int]]) -> None:
        """Delete the keys (best effort: an unreachable cluster leaves them to expire or leak).

        The keys of one batch share a slot, so each batch's keys go in one
        ``UNLINK``, and each primary gets one pipeline of them over its own
        connection (the cluster client's pipeline costs far more CPU, taken
        from the gets that run meanwhile).
        """
        if not pages:
            return
        with self.lock:
            cluster = self._connect()
            if cluster is None:
                return
        batches: dict[int, list[str]] = {}
        for loc, tag in pages:
            batches.setdefault(loc, []).append(self.key(loc, tag))
        freed = 0
        try:
            pipes: dict[str, Any] = {}
            for keys in batches.values():
                node = cluster.get_node_from_key(keys[0])
                pipe = pipes.get(node.name)
                if pipe is None:
                    connection = cluster.get_redis_connection(node)
                    pipe = pipes[node.name] = connection.pipeline(transaction=False)
                pipe.unlink(*keys)
            for pipe in pipes.values():
                for reply in pipe.execute(raise_on_error=False):
                    if isinstance(reply, Exception):  # MOVED and the like: re-read the map
                        raise reply
                    freed += reply
        except (RedisError, RedisClusterException, OSError) as exc:
            with self.lock:
                self.pages -= freed
                self._down(exc)
            return
        with self.lock:
            self.pages -= freed

    def dropped(self) -> list[tuple[int, int]]:
        """The cluster evicts keys silently: a drop is learnt on the next get (a miss)."""
        return []

    def stats(self) -> dict[str, Any]:
        """Pages written and not freed, bytes written, failures, and the cluster's health."""
        out: dict[str, Any] = {
            "tier": self.name,
            "nodes": [f"{n.host}:{n.port}" for n in self.nodes],
            "healthy": self.healthy,
            "failure": self.failure,
            "pages": self.pages,
        }
        out.update(self.counters)
        return out

    def close(self) -> None:
        """Delete nothing (keys of a stopped host are unreachable); close connections."""
        with self.lock:
            for primary in self._primaries.values():
                primary.close()
            self._primaries = {}
            self._owners = {}
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

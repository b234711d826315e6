"""The records the engine keeps for pools and clients."""

from __future__ import annotations

import uuid as _uuid
from typing import Any

from tmem.api import OP_COUNTERS, REJECT_REASONS
from tmem.engine.insertion import GHOSTS, Duel, Recency


class Counters:
    """The operation counters of :data:`tmem.api.OP_COUNTERS`, as plain attributes."""

    __slots__ = OP_COUNTERS
    # Declared for readers and type checkers; the table above names them for code and docs.
    puts: int
    succ_puts: int
    failed_puts: int
    gets: int
    succ_gets: int
    flushes: int
    flush_objects: int
    evictions: int

    def __init__(self) -> None:
        for name in OP_COUNTERS:
            setattr(self, name, 0)

    def counters(self) -> dict[str, int]:
        """The counters as a dict, in table order."""
        return {name: getattr(self, name) for name in OP_COUNTERS}

    def add_to(self, totals: dict[str, int]) -> None:
        """Add these counters into ``totals``."""
        for name in OP_COUNTERS:
            totals[name] = totals.get(name, 0) + getattr(self, name)


class Pool(Counters):
    """A pool: its kind, its objects (oid -> {index: page id}) and its counters.

    A shared pool is one record that several clients reach, each through a
    pool id of its own; its pages are charged to its ``owner``.
    """

    __slots__ = (
        "uid",
        "owner",
        "persistent",
        "shared",
        "uuid",
        "page_size",
        "destructive_get",
        "objs",
        "pages",
        "bytes",
        "meta",
        "members",
    )

    def __init__(
        self,
        uid: int,
        owner: ClientState,
        persistent: bool,
        shared: bool,
        uuid: _uuid.UUID | None,
        page_size: int,
    ) -> None:
        super().__init__()
        self.uid = uid
        self.owner = owner
        self.persistent = persistent
        self.shared = shared
        self.uuid = uuid
        self.page_size = page_size
        #: Gets from a private ephemeral pool take the page away (cleancache's
        #: exclusive cache); every other get leaves it in place.
        self.destructive_get = not persistent and not shared
        self.objs: dict[int, dict[int, int]] = {}
        self.pages = 0
        self.bytes = 0  # its pages' charges and ``meta``
        self.meta = 0  # bytes charged for its objects and for the pool itself
        self.members: dict[ClientState, int] = {}  # client -> its pool id for this pool

    def describe(self) -> dict[str, Any]:
        """The pool's kind, sizes and counters."""
        out: dict[str, Any] = {
            "persistent": self.persistent,
            "shared": self.shared,
            "uuid": str(self.uuid) if self.uuid else None,
            "page_size": self.page_size,
            "objects": len(self.objs),
        }
        out.update(self.counters())
        out["pages"] = self.pages
        out["bytes"] = self.bytes
        return out


class ClientState(Counters):
    """A connected client: its policy, its pools, its charges and its LRU list."""

    __slots__ = (
        "name",
        "cid",
        "weight",
        "cap",
        "frozen",
        "pools",
        "next_pool_id",
        "lru",
        "pages",
        "bytes",
        "eph_bytes",
        "eph_pages",
        "rejects",
        "live",
        "tier_pages",
        "tier_bytes",
        "demotions",
        "promotions",
        "tier_failures",
        "poor_lru",
        "poor_pages",
        "ghosts",
        "utility",
        "duel",
        "last_active",
        "floor",
    )

    def __init__(
        self, name: str, cid: int, weight: int, cap: int | None, lru: int, poor_lru: int = -1
    ) -> None:
        super().__init__()
        self.name = name
        self.cid = cid
        self.weight = weight
        self.cap = cap
        self.frozen = False
        self.pools: dict[int, Pool] = {}
        self.next_pool_id = 0
        self.lru = lru
        self.pages = 0
        self.bytes = 0
        self.eph_bytes = 0
        self.eph_pages = 0
        self.rejects = dict.fromkeys(REJECT_REASONS, 0)
        self.live = True
        self.tier_pages = 0  # pages of its own that tiers below RAM hold
        self.tier_bytes = 0  # and their bytes there (counted against its cap)
        self.demotions = 0
        self.promotions = 0
        self.tier_failures = 0
        #: Ephemeral pages kept raw because they compress poorly: evicted sooner.
        self.poor_lru = poor_lru
        self.poor_pages = 0
        #: The adaptive order's state: pages got lately, shadows, the order in use.
        self.duel = Duel()
        #: Handles of recently evicted ephemeral pages (shadow entries), oldest first:
        #: a list of the duel's handle table, so that a get finds its handle once.
        self.ghosts = Recency(self.duel.handles, GHOSTS)
        #: Misses that more memory would have saved lately (ghost hits, decayed).
        self.utility = 0.0
        #: The engine's operation count at this client's last put or get.
        self.last_active = 0
        #: Ephemeral bytes this client keeps under contention (its guaranteed floor).
        self.floor = 0

    def add_to(self, totals: dict[str, int]) -> None:
        """Add these counters, and a ``reject_<reason>`` count per reason, into ``totals``."""
        super().add_to(totals)
        for reason, n in self.rejects.items():
            key = "reject_" + reason
            totals[key] = totals.get(key, 0) + n

    def describe(self) -> dict[str, Any]:
        """The client's counters, charges and policy, and each of its pools'."""
        out: dict[str, Any] = self.counters()
        out.update(
            pages=self.pages,
            bytes=self.bytes,
            ephemeral_bytes=self.eph_bytes,
            weight=self.weight,
            cap=self.cap,
            frozen=self.frozen,
            tier_pages=self.tier_pages,
            tier_bytes=self.tier_bytes,
            demotions=self.demotions,
            promotions=self.promotions,
            tier_failures=self.tier_failures,
        )
        for reason, n in self.rejects.items():
            out["reject_" + reason] = n
        out["pools"] = {pid: pool.describe() for pid, pool in self.pools.items()}
        return out

    def __hash__(self) -> int:
        return self.cid

    def __eq__(self, other: object) -> bool:
        return self is other

"""Making room: which ephemeral page goes when memory is short.

Policy (documented in docs/internals.md):

* A client over its ``cap`` loses its own least recently used ephemeral pages.
* When the host is full, a persistent put takes the putting client's own
  ephemeral pages first; after those, and for every ephemeral put, the victim
  is the client holding the most ephemeral bytes per unit of weight (counting
  the page being put against the putter), i.e. the one most over its weighted
  share.  Within a client, exact LRU over all its ephemeral pages.
* Persistent pages are never evicted; a put that only they block is refused.
  When persistent pages nearly fill the host, a client past its weighted
  share of the capacity may not add more (``reject_share``), so the last
  room goes to clients within their share.
* One put evicts at most :data:`MAX_EVICTIONS_PER_PUT` pages (bounded work).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tmem.engine.state import ClientState

MAX_EVICTIONS_PER_PUT = 256
#: Bytes charged per stored page for the engine's own metadata (measured by bench/engine.py).
PAGE_METADATA_BYTES = 160
#: Persistent pages of clients past their weighted share stop at 1/32 below capacity.
PERSISTENT_HEADROOM = 32


class EvictionMixin:
    """Victim choice and eviction for :class:`tmem.engine.core.Engine`."""

    def make_room(self, owner: ClientState, persistent: bool, cost: int) -> str | None:
        """Evict until ``cost`` more bytes fit; return None, or the reason it cannot."""
        if owner.cap is not None and owner.bytes + cost > owner.cap:
            if owner.bytes - owner.eph_bytes + cost > owner.cap:
                return "cap"
            for _ in range(MAX_EVICTIONS_PER_PUT):
                if owner.eph_bytes <= 0:
                    return "cap"
                self.evict_from(owner)
                if owner.bytes + cost <= owner.cap:
                    break
            else:
                return "cap"
        # The new page's data already counts in the store's bytes; only its metadata is to come.
        need = self.used + PAGE_METADATA_BYTES - self.capacity
        if need > self.eph_used:
            return "capacity"
        if persistent and self.over_persistent_share(owner, cost):
            return "share"
        if need > 0:
            for _ in range(MAX_EVICTIONS_PER_PUT):
                if self.eph_used <= 0:  # evicted pages whose content others still share
                    return "capacity"
                own = persistent and owner.eph_bytes > 0
                self.evict_from(owner if own else self.most_over(owner, cost))
                if self.used + PAGE_METADATA_BYTES <= self.capacity:
                    break
            else:
                return "capacity"
        return None

    def over_persistent_share(self, owner: ClientState, cost: int) -> bool:
        """True if persistent pages nearly fill the host and ``owner`` holds past its share.

        Persistent pages cannot be evicted, so without this rule the first
        client to fill the host would keep it. Once persistent pages would
        reach the last :data:`PERSISTENT_HEADROOM` of the capacity, only
        clients within their weighted share of the capacity may add more; the
        others are refused and, like a frontswap that writes its oldest pages
        back to its swap file, give room back to those under their share.
        """
        if len(self.clients) < 2:
            return False  # a lone client's share is the whole host
        # As in make_room, the new page's data already counts in ``used``.
        persistent_after = self.used + PAGE_METADATA_BYTES - self.eph_used
        if persistent_after <= self.calm_limit:
            return False
        total_weight = sum(client.weight for client in self.clients.values())
        share = self.capacity * owner.weight // total_weight
        return owner.bytes - owner.eph_bytes + cost > share

    def most_over(self, putter: ClientState | None = None, cost: int = 0) -> ClientState:
        """The client with the most ephemeral bytes per unit of weight."""
        best, best_ratio = None, -1.0
        for client in self.clients.values():
            held = client.eph_bytes
            if held <= 0:
                continue
            if client is putter:
                held += cost
            ratio = held / client.weight
            if ratio > best_ratio:
                best, best_ratio = client, ratio
        assert best is not None, "no ephemeral pages to evict"
        return best

    def evict_from(self, client: ClientState) -> None:
        """Evict the least recently used ephemeral page charged to ``client``."""
        table = self.table
        pid = table.oldest(client.lru)
        pool = self.pools[table.pool[pid]]
        self._remove(pid, pool)
        pool.evictions += 1
        client.evictions += 1

    def shrink_to_cap(self, client: ClientState) -> None:
        """Evict the client's ephemeral pages until it is within its cap (or has none)."""
        while client.cap is not None and client.bytes > client.cap and client.eph_bytes > 0:
            self.evict_from(client)

    def shrink_to_capacity(self) -> None:
        """Evict ephemeral pages, most-over client first, until the host fits its capacity."""
        while self.used > self.capacity and self.eph_used > 0:
            self.evict_from(self.most_over())

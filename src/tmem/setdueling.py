"""Set-dueling between LRU and a *reuse* order, for any list of pages a client keeps.

A :class:`Duel` replays one client's puts and gets in two shadow lists of
handles (no data) -- one kept in LRU order, one in the *reuse* order -- and
says which of the two misses less lately.  Under *reuse*, a page got back
lately goes in at the most recent end and any other at the evicting end,
one in :data:`BIMODAL` at the most recent end (DIP, Qureshi et al., ISCA '07;
the trip counts of Gaur et al., ISCA '11).  The host's ephemeral pools use it
(:mod:`tmem.engine.insertion`) and so does frontswap's writeback order
(:mod:`tmem.frontends.frontswap`), which is why it lives apart from both.
"""

from __future__ import annotations

from collections.abc import Iterator

from librt.vecs import append, vec
from mypy_extensions import i32

from tmem.errors import InvalidArgument

#: The orders a list may be kept in: by duel, or plain LRU; the first is the default.
ORDERS: tuple[str, ...] = ("adaptive", "lru")
#: One new page in this many goes in at the most recent end under *reuse*.
BIMODAL = 32
#: The fraction of misses by which one shadow must beat the other to switch order.
MARGIN = 0.1
#: Handles of pages got lately that each client remembers, as a fraction of the
#: pages the capacity holds, and at most (about 7 MiB of handles).
HIT_FRACTION = 1 / 4
HIT_LIMIT = 1 << 16
#: Shadows follow every handle on hosts of up to this many pages; on larger
#: hosts one handle in the smallest power of two that brings them back to it.
SHADOW_PAGES = 1 << 14


def check_order(order: object) -> str:
    """``order`` if it names an order of :data:`ORDERS`, else InvalidArgument."""
    if order not in ORDERS:
        raise InvalidArgument(f"order {order!r} must be one of {', '.join(ORDERS)}")
    return str(order)


def hit_limit(capacity_pages: int) -> int:
    """How many handles got lately a duel over ``capacity_pages`` pages remembers."""
    return max(16, min(HIT_LIMIT, int(capacity_pages * HIT_FRACTION)))


def shadow_mask(capacity_pages: int) -> int:
    """``2**k - 1``: the shadows follow the handles whose hash has these bits clear."""
    sample = 1
    while capacity_pages // sample > SHADOW_PAGES:
        sample *= 2
    return sample - 1


class Recency:
    """Handles in order, oldest first: the ``OrderedDict`` operations a duel makes
    (insert or move to either end, remove, drop the oldest), each with one lookup.

    The order is a doubly linked list of slots in two ``vec`` arrays (slot 0
    is its sentinel), so that compiled an operation is one dict lookup and a
    few machine words, where an ``OrderedDict`` hashes its key twice and is
    reached by a method call.  Keys are kept as the objects given (compiled,
    a key typed as a tuple would be rebuilt at every use).
    """

    __slots__ = ("_slot", "_keys", "_prev", "_next", "_free")

    def __init__(self) -> None:
        self._slot: dict[object, int] = {}  # key -> its slot
        self._keys: list[object] = [None]  # slot -> its key (None: free)
        self._prev: vec[i32] = vec[i32]([0])
        self._next: vec[i32] = vec[i32]([0])
        self._free = 0  # free slots, chained through _next; 0: none

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, key: object) -> bool:
        return key in self._slot

    def __iter__(self) -> Iterator[object]:
        """The keys, oldest first."""
        nxt, keys = self._next, self._keys
        at: int = nxt[0]
        while at:
            yield keys[at]
            at = nxt[at]

    def to_end(self, key: object) -> None:
        """Put ``key`` at the newest end (moving it there if present)."""
        at = self._slot.get(key, 0)
        if at:
            self._unlink(at)
        else:
            at = self._new(key)
        self._link_last(at)

    def to_front(self, key: object) -> None:
        """Put ``key`` at the oldest end (moving it there if present)."""
        at = self._slot.get(key, 0)
        if at:
            self._unlink(at)
        else:
            at = self._new(key)
        prev, nxt = self._prev, self._next
        first: int = nxt[0]
        prev[first] = at
        nxt[at] = first
        prev[at] = 0
        nxt[0] = at

    def add(self, key: object) -> None:
        """Put ``key`` at the newest end unless it is there already (it then stays put)."""
        if key not in self._slot:
            self._link_last(self._new(key))

    def discard(self, key: object) -> bool:
        """Remove ``key``; whether it was there."""
        at = self._slot.get(key, 0)
        if not at:
            return False
        del self._slot[key]
        self._release(at)
        return True

    def pop_oldest(self) -> None:
        """Remove the oldest key (there must be one)."""
        at: int = self._next[0]
        del self._slot[self._keys[at]]
        self._release(at)

    def _new(self, key: object) -> int:
        """A free slot for ``key`` (not linked yet)."""
        at = self._free
        if at:
            self._free = self._next[at]
            self._keys[at] = key
        else:  # grow by one: a vec keeps room to append into
            at = len(self._keys)
            self._keys.append(key)
            self._prev = append(self._prev, 0)
            self._next = append(self._next, 0)
        self._slot[key] = at
        return at

    def _link_last(self, at: int) -> None:
        prev, nxt = self._prev, self._next
        last: int = prev[0]
        nxt[last] = at
        prev[at] = last
        nxt[at] = 0
        prev[0] = at

    def _unlink(self, at: int) -> None:
        prev, nxt = self._prev, self._next
        p: int = prev[at]
        n: int = nxt[at]
        nxt[p] = n
        prev[n] = p

    def _release(self, at: int) -> None:
        """Unlink slot ``at`` and free it."""
        self._unlink(at)
        self._keys[at] = None
        self._next[at] = self._free
        self._free = at


class Duel:
    """One client's state under the adaptive order: its handles got lately, the two
    shadows and their misses, and the order it uses now."""

    __slots__ = (
        "hits", "lru", "reuse", "lru_misses", "reuse_misses", "reusing", "_new", "_shadow_new",
    )  # fmt: skip

    def __init__(self) -> None:
        #: Handles of the client's pages got from tmem lately, oldest first.
        self.hits = Recency()
        #: Shadow lists (evicting end first) under LRU and under reuse.
        self.lru = Recency()
        self.reuse = Recency()
        self.lru_misses = 0.0
        self.reuse_misses = 0.0
        #: True while the client uses *reuse*, False while LRU.
        self.reusing = False
        self._new = 0  # new pages put under reuse, for the one in BIMODAL
        self._shadow_new = 0  # the same in the reuse shadow

    def put(self, key: object, pages: int, mask: int) -> bool:
        """A put of a new page at ``key`` (a handle: any hashable, the engine's are
        ``(pool uid, oid, index)`` tuples), the client now holding ``pages`` ephemeral
        pages: replay it in the shadows (if ``key``'s hash has the bits of ``mask``
        clear; each shadow is kept to ``pages // (mask + 1) + 1`` keys), and say
        whether the page goes in at the evicting end."""
        new = key not in self.hits
        if not mask or not hash(key) & mask:
            length = pages // (mask + 1) + 1
            lru, reuse = self.lru, self.reuse
            lru.to_end(key)
            front = False  # under reuse, a new page goes in at the evicting end
            if new:
                self._shadow_new += 1
                front = self._shadow_new % BIMODAL != 0
            if front:
                reuse.to_front(key)
            else:
                reuse.to_end(key)
            while len(lru) > length:
                lru.pop_oldest()
            while len(reuse) > length:
                reuse.pop_oldest()
        if new and self.reusing:
            self._new += 1
            return self._new % BIMODAL != 0
        return False

    def get(self, key: object, hit: bool, limit: int, mask: int) -> None:
        """A get at ``key`` (``hit``: tmem had the page): replay it in the shadows (as
        :meth:`put` samples), switch order past the margin, and remember a hit's key
        among the last ``limit`` got."""
        if not mask or not hash(key) & mask:
            if not self.lru.discard(key):
                self.lru_misses += 1
            if not self.reuse.discard(key):
                self.reuse_misses += 1
            if self.reuse_misses < self.lru_misses * (1 - MARGIN):
                self.reusing = True
            elif self.lru_misses < self.reuse_misses * (1 - MARGIN):
                self.reusing = False
        if hit:
            hits = self.hits
            hits.to_end(key)
            if len(hits) > limit:
                hits.pop_oldest()

    def decay(self) -> None:
        """Halve the misses counted: recent gets count most."""
        self.lru_misses /= 2
        self.reuse_misses /= 2

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
from typing import Final

from librt.vecs import append, vec
from mypy_extensions import i32, u8

from tmem.errors import InvalidArgument

#: The orders a list may be kept in: by duel, or plain LRU; the first is the default.
ORDERS: tuple[str, ...] = ("adaptive", "lru")
#: One new page in this many goes in at the most recent end under *reuse*.
BIMODAL: Final = 32
#: The fraction of misses by which one shadow must beat the other to switch order.
MARGIN: Final = 0.1
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


#: The lists a :class:`Handles` table threads its handles through: a client's handles
#: got lately, its two shadows, and its ghosts (the engine's, :mod:`tmem.engine.ledger`).
HITS: Final = 0
LRU_SHADOW: Final = 1
REUSE_SHADOW: Final = 2
GHOSTS: Final = 3
_SHIFT: Final = 2  # a slot's node in list k is ``slot << _SHIFT | k``: four lists


class Handles:
    """The handles one client's lists hold, each kept once: one dict lookup finds a
    handle's slot, and every list's operations on that slot are a few machine words.

    A slot has a node in each list (``slot << 2 | k`` for list ``k``), linked
    through two ``vec`` arrays; slot 0's nodes are the lists' sentinels.  A
    bit per list says which lists hold the slot; a slot no list holds is freed
    (:meth:`settle`, :meth:`Recency.pop_oldest`).  Keys are kept as the objects
    given (compiled, a key typed as a tuple would be rebuilt at every use).
    """

    __slots__ = ("_slot", "_keys", "_prev", "_next", "_in", "_free")

    def __init__(self) -> None:
        self._slot: dict[object, int] = {}  # key -> its slot
        self._keys: list[object] = [None]  # slot -> its key (None: free)
        self._prev: vec[i32] = vec[i32]([0, 1, 2, 3])  # the sentinels: empty lists
        self._next: vec[i32] = vec[i32]([0, 1, 2, 3])
        self._in: vec[u8] = vec[u8]([0])  # slot -> a bit per list that holds it
        self._free = 0  # free slots, chained through their first node's next; 0: none

    def __len__(self) -> int:
        return len(self._slot)

    def find(self, key: object) -> int:
        """The slot of ``key``, 0 if no list holds it."""
        return self._slot.get(key, 0)

    def slot(self, key: object) -> int:
        """The slot of ``key``, a new one (in no list yet) if it has none: one lookup."""
        at = self._free
        if not at:
            at = self._grow()
        got: int = self._slot.setdefault(key, at)
        if got == at:  # taken: off the free chain
            self._free = self._next[at << _SHIFT]
            self._keys[at] = key
        return got

    def settle(self, at: int) -> None:
        """Free slot ``at`` if it is one (not 0, not free) and no list holds it."""
        if at and not self._in[at] and self._keys[at] is not None:
            self._release(at)

    def _grow(self) -> int:
        """A new free slot, at the head of the free chain."""
        at = len(self._keys)
        self._keys.append(None)
        prev, nxt = self._prev, self._next
        for _ in range(1 << _SHIFT):
            prev = append(prev, 0)
            nxt = append(nxt, 0)
        self._prev, self._next = prev, nxt
        self._in = append(self._in, 0)
        nxt[at << _SHIFT] = self._free
        self._free = at
        return at

    def _release(self, at: int) -> None:
        del self._slot[self._keys[at]]
        self._keys[at] = None
        self._next[at << _SHIFT] = self._free
        self._free = at


class Recency:
    """Handles in order, oldest first: the ``OrderedDict`` operations a duel makes
    (insert or move to either end, remove, drop the oldest), each with one lookup,
    or none for the ``*_at`` forms given a slot of :attr:`handles`.

    One of the lists of a :class:`Handles` table (a new table of its own if
    none is given), a doubly linked list of its slots' nodes.
    """

    __slots__ = ("handles", "_head", "_bit", "_len")

    def __init__(self, handles: Handles | None = None, number: int = HITS) -> None:
        self.handles = Handles() if handles is None else handles
        self._head = number  # its sentinel node (slot 0's)
        self._bit = 1 << number
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: object) -> bool:
        return self.holds(self.handles.find(key))

    def __iter__(self) -> Iterator[object]:
        """The keys, oldest first."""
        handles, head = self.handles, self._head
        node: int = handles._next[head]
        while node != head:
            yield handles._keys[node >> _SHIFT]
            node = handles._next[node]

    def holds(self, at: int) -> bool:
        """Whether slot ``at`` (0: none) is in this list."""
        bits: int = self.handles._in[at]
        return bits & self._bit != 0

    def to_end(self, key: object) -> None:
        """Put ``key`` at the newest end (moving it there if present)."""
        self.to_end_at(self.handles.slot(key))

    def to_front(self, key: object) -> None:
        """Put ``key`` at the oldest end (moving it there if present)."""
        self.to_front_at(self.handles.slot(key))

    def add(self, key: object) -> None:
        """Put ``key`` at the newest end unless it is there already (it then stays put)."""
        self.add_at(self.handles.slot(key))

    def discard(self, key: object) -> bool:
        """Remove ``key``; whether it was there."""
        handles = self.handles
        at = handles.find(key)
        found = self.discard_at(at)
        handles.settle(at)
        return found

    def to_end_at(self, at: int) -> None:
        """:meth:`to_end` of the key of slot ``at``."""
        node = self._take(at)
        handles, head = self.handles, self._head
        prev, nxt = handles._prev, handles._next
        last: int = prev[head]
        nxt[last] = node
        prev[node] = last
        nxt[node] = head
        prev[head] = node

    def to_front_at(self, at: int) -> None:
        """:meth:`to_front` of the key of slot ``at``."""
        node = self._take(at)
        handles, head = self.handles, self._head
        prev, nxt = handles._prev, handles._next
        first: int = nxt[head]
        prev[first] = node
        nxt[node] = first
        prev[node] = head
        nxt[head] = node

    def add_at(self, at: int) -> None:
        """:meth:`add` of the key of slot ``at``."""
        if not self.holds(at):
            self.to_end_at(at)

    def discard_at(self, at: int) -> bool:
        """Take slot ``at`` (0: none) off this list; whether it was on it.  The slot
        stays taken: :meth:`Handles.settle` frees it once no list holds it."""
        if not self.holds(at):
            return False
        self._unlink(at << _SHIFT | self._head)
        bits: int = self.handles._in[at]
        self.handles._in[at] = bits & ~self._bit
        self._len -= 1
        return True

    def pop_oldest(self) -> None:
        """Remove the oldest key (there must be one); its slot is freed if no list holds it."""
        handles = self.handles
        node: int = handles._next[self._head]
        at = node >> _SHIFT
        self._unlink(node)
        bits: int = handles._in[at]
        bits &= ~self._bit
        handles._in[at] = bits
        self._len -= 1
        if not bits:
            handles._release(at)

    def _take(self, at: int) -> int:
        """Slot ``at``'s node, unlinked if on this list, else counted in (not linked yet)."""
        node = at << _SHIFT | self._head
        handles = self.handles
        bits: int = handles._in[at]
        if bits & self._bit:
            self._unlink(node)
        else:
            handles._in[at] = bits | self._bit
            self._len += 1
        return node

    def _unlink(self, node: int) -> None:
        prev, nxt = self.handles._prev, self.handles._next
        p: int = prev[node]
        n: int = nxt[node]
        nxt[p] = n
        prev[n] = p


class Duel:
    """One client's state under the adaptive order: its handles got lately, the two
    shadows and their misses, and the order it uses now.

    Its lists share one :class:`Handles` table (``handles``, a new one if none is
    given), so a put or get finds its handle once for all of them."""

    __slots__ = (
        "handles", "hits", "lru", "reuse", "lru_misses", "reuse_misses", "reusing", "_new",
        "_shadow_new",
    )  # fmt: skip

    def __init__(self, handles: Handles | None = None) -> None:
        table = self.handles = Handles() if handles is None else handles
        #: Handles of the client's pages got from tmem lately, oldest first.
        self.hits = Recency(table, HITS)
        #: Shadow lists (evicting end first) under LRU and under reuse.
        self.lru = Recency(table, LRU_SHADOW)
        self.reuse = Recency(table, REUSE_SHADOW)
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
        handles = self.handles
        if not mask or not hash(key) & mask:
            at = handles.slot(key)
            new = not self.hits.holds(at)
            length = pages // (mask + 1) + 1
            lru, reuse = self.lru, self.reuse
            lru.to_end_at(at)
            front = False  # under reuse, a new page goes in at the evicting end
            if new:
                self._shadow_new += 1
                front = self._shadow_new % BIMODAL != 0
            if front:
                reuse.to_front_at(at)
            else:
                reuse.to_end_at(at)
            while len(lru) > length:
                lru.pop_oldest()
            while len(reuse) > length:
                reuse.pop_oldest()
        else:
            new = not self.hits.holds(handles.find(key))
        if new and self.reusing:
            self._new += 1
            return self._new % BIMODAL != 0
        return False

    def get(self, key: object, hit: bool, limit: int, mask: int) -> None:
        """A get at ``key`` (``hit``: tmem had the page): replay it in the shadows (as
        :meth:`put` samples), switch order past the margin, and remember a hit's key
        among the last ``limit`` got."""
        handles = self.handles
        at = handles.slot(key) if hit else handles.find(key)
        self.get_at(key, at, hit, limit, mask)
        handles.settle(at)

    def get_at(self, key: object, at: int, hit: bool, limit: int, mask: int) -> None:
        """:meth:`get`, given ``key``'s slot ``at`` in :attr:`handles` (0: none; a slot,
        taken with :meth:`Handles.slot`, for a hit); the caller settles it after."""
        if not mask or not hash(key) & mask:
            if not self.lru.discard_at(at):
                self.lru_misses += 1
            if not self.reuse.discard_at(at):
                self.reuse_misses += 1
            if self.reuse_misses < self.lru_misses * (1 - MARGIN):
                self.reusing = True
            elif self.lru_misses < self.reuse_misses * (1 - MARGIN):
                self.reusing = False
        if hit:
            hits = self.hits
            hits.to_end_at(at)
            if len(hits) > limit:
                hits.pop_oldest()

    def decay(self) -> None:
        """Halve the misses counted: recent gets count most."""
        self.lru_misses /= 2
        self.reuse_misses /= 2

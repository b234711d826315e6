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

from collections import OrderedDict

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

Handle = tuple[int, int, int]


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


class Duel:
    """One client's state under the adaptive order: its handles got lately, the two
    shadows and their misses, and the order it uses now."""

    __slots__ = (
        "hits", "lru", "reuse", "lru_misses", "reuse_misses", "reusing", "_new", "_shadow_new",
    )  # fmt: skip

    def __init__(self) -> None:
        #: Handles of the client's pages got from tmem lately, oldest first.
        self.hits: OrderedDict[Handle, None] = OrderedDict()
        #: Shadow lists (evicting end first) under LRU and under reuse.
        self.lru: OrderedDict[Handle, None] = OrderedDict()
        self.reuse: OrderedDict[Handle, None] = OrderedDict()
        self.lru_misses = 0.0
        self.reuse_misses = 0.0
        #: True while the client uses *reuse*, False while LRU.
        self.reusing = False
        self._new = 0  # new pages put under reuse, for the one in BIMODAL
        self._shadow_new = 0  # the same in the reuse shadow

    def put(self, key: Handle, pages: int, mask: int) -> bool:
        """A put of a new page at ``key``, the client now holding ``pages`` ephemeral
        pages: replay it in the shadows (if ``key``'s hash has the bits of ``mask``
        clear; each shadow is kept to ``pages // (mask + 1) + 1`` handles), and say
        whether the page goes in at the evicting end."""
        new = key not in self.hits
        if not hash(key) & mask:
            length = pages // (mask + 1) + 1
            lru, reuse = self.lru, self.reuse
            lru.pop(key, None)
            lru[key] = None
            reuse.pop(key, None)
            reuse[key] = None
            if new:
                self._shadow_new += 1
                if self._shadow_new % BIMODAL:
                    reuse.move_to_end(key, last=False)
            while len(lru) > length:
                lru.popitem(last=False)
            while len(reuse) > length:
                reuse.popitem(last=False)
        if new and self.reusing:
            self._new += 1
            return self._new % BIMODAL != 0
        return False

    def get(self, key: Handle, hit: bool, limit: int, mask: int) -> None:
        """A get at ``key`` (``hit``: tmem had the page): replay it in the shadows (as
        :meth:`put` samples), switch order past the margin, and remember a hit's handle
        among the last ``limit`` got."""
        if not hash(key) & mask:
            if self.lru.pop(key, 1) is not None:
                self.lru_misses += 1
            if self.reuse.pop(key, 1) is not None:
                self.reuse_misses += 1
            if self.reuse_misses < self.lru_misses * (1 - MARGIN):
                self.reusing = True
            elif self.lru_misses < self.reuse_misses * (1 - MARGIN):
                self.reusing = False
        if hit:
            hits = self.hits
            hits[key] = None
            hits.move_to_end(key)
            if len(hits) > limit:
                hits.popitem(last=False)

    def decay(self) -> None:
        """Halve the misses counted: recent gets count most."""
        self.lru_misses /= 2
        self.reuse_misses /= 2

"""Where a new ephemeral page goes in its owner's list: the order within a client.

Eviction always takes a client's least recently used end
(:func:`tmem.engine.victims.least_recent`); what an order decides is where a
page that a private ephemeral pool's put brings in goes on that list:

* ``"lru"``: at the most recent end, always (exact LRU).
* ``"adaptive"``: per client, whichever of two orders its recent gets say
  misses less, decided by set-dueling (DIP, Qureshi et al., ISCA '07):

  - *LRU*, as above;
  - *reuse*: a page the client got from tmem lately (an exclusive get
    takes a page out, so having been hit is the only sign of reuse an
    exclusive cache keeps -- the trip counts of Gaur et al., ISCA '11) goes
    in at the most recent end; any other page goes in at the evicting end,
    one in :data:`BIMODAL` at the most recent end.  Against a loop longer
    than the memory a client has, LRU keeps nothing that comes round again;
    this keeps a stable part of the loop.

  Two shadow lists of handles (no data), each as long as the client's
  ephemeral pages, replay the client's puts and gets under each order and
  count their misses, halved as ghost hits are; the client uses *reuse*
  while its shadow misses :data:`MARGIN` fewer than LRU's, and LRU again
  once LRU's misses that much fewer.  On a host of more than
  :data:`SHADOW_PAGES` pages the shadows follow only one handle in ``2**k``
  (by hash), each ``2**k`` times shorter (miniature simulation).

Shared ephemeral pools keep LRU (their gets leave the page in place and make
it most recent).  The handles kept here are not charged to anyone, as ghost
entries are not (docs/internals.md).
"""

from __future__ import annotations

from collections import OrderedDict

from tmem.errors import InvalidArgument

#: The orders a host may be built with; the first is the default.
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

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

from tmem.setdueling import BIMODAL as BIMODAL
from tmem.setdueling import GHOSTS as GHOSTS
from tmem.setdueling import HIT_FRACTION as HIT_FRACTION
from tmem.setdueling import HIT_LIMIT as HIT_LIMIT
from tmem.setdueling import MARGIN as MARGIN
from tmem.setdueling import ORDERS as ORDERS
from tmem.setdueling import SHADOW_PAGES as SHADOW_PAGES
from tmem.setdueling import Duel as Duel
from tmem.setdueling import Handles as Handles
from tmem.setdueling import Recency as Recency
from tmem.setdueling import check_order as check_order
from tmem.setdueling import hit_limit as hit_limit
from tmem.setdueling import shadow_mask as shadow_mask

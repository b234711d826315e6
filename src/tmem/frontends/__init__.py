"""Frontends: the classic users of tmem, for Python programs.

* :class:`CleanCache` -- a file page cache whose evicted clean pages go to an
  ephemeral pool (cleancache); :meth:`CleanCache.open` gives file objects.
* :class:`Frontswap` -- a swap area whose pages go to a persistent pool before
  a real swap file (frontswap), with partial swapoff, self-shrinking and
  write-behind.
* :class:`SwapMemory` -- memory of any size of which at most N pages are
  resident, paged through frontswap by userfaultfd (any code can use it).
* :class:`SelfBalloon` -- sizes a :class:`CleanCache`'s private cache to its
  working set (Xen's selfballoon), giving cold pages to tmem.
* :class:`SpillMapping` -- a ``MutableMapping`` that spills values past a memory
  limit through frontswap; usable as a Dask worker's data store.

Frontends see only the client API (:class:`tmem.api.Client`), so they work with
any host, embedded or remote.
"""

from tmem.frontends.balloon import SelfBalloon
from tmem.frontends.cachedfile import CachedFile
from tmem.frontends.cleancache import CleanCache
from tmem.frontends.errors import EmptySlot, PagesLost
from tmem.frontends.frontswap import Frontswap
from tmem.frontends.selfshrink import SelfShrink
from tmem.frontends.spill import SpillMapping
from tmem.frontends.swapmemory import SwapMemory

__all__ = [
    "CachedFile",
    "CleanCache",
    "EmptySlot",
    "Frontswap",
    "PagesLost",
    "SelfBalloon",
    "SelfShrink",
    "SpillMapping",
    "SwapMemory",
]

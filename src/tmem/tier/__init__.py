"""Tiers below RAM: where the host's coldest pages go when its RAM store runs short.

* :class:`SsdTier`: a log-structured file on local disk (like memcached's
  extstore and zram's writeback), pages appended in large writes, an index in
  RAM, space reclaimed by compaction, the kernel's page cache bypassed.
* :class:`ClusterTier`: RAMster on a Redis Cluster: pages kept in other
  machines' memory, persistent ones confirmed on a replica before they leave.

Both implement :class:`Tier`; :func:`parse_tier` builds one from its
``ssd:PATH:SIZE`` or ``redis://HOST:PORT,...`` spelling.
"""

from __future__ import annotations

from tmem.tier.base import Demotion, Tier, TierError
from tmem.tier.spec import parse_tier, parse_tiers

__all__ = ["Demotion", "Tier", "TierError", "parse_tier", "parse_tiers"]

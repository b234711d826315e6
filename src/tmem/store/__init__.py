"""Page stores: where the engine's pages live, in memory the store owns.

* :class:`RamStore`: pages copied whole, nothing else (``compress=None`` and
  no deduplication): the fastest store, and the reference for the others.
* :class:`CompressedStore`: same-filled pages in a word, deduplication within a
  client or across the host, lz4 or zstd per client, size classes packed into
  arenas with compaction (see ``docs/stores.md``).
"""

from __future__ import annotations

from typing import Any

from tmem.errors import InvalidArgument
from tmem.store.base import REJECTED, PageStore
from tmem.store.codecs import CODEC_IDS
from tmem.store.compressed import DEDUP_SCOPES, CompressedStore
from tmem.store.export import decode_export
from tmem.store.ram import RamStore

#: Names accepted for ``compress`` (None and "none" both mean stored raw).
COMPRESSORS: tuple[str | None, ...] = tuple(CODEC_IDS)


def make_store(compress: Any = "lz4", dedup: Any = "auto", **options: Any) -> PageStore:
    """Build the page store for a host's defaults.

    ``compress`` is the codec of clients that choose none of their own;
    ``dedup`` is None (off), ``"client"``, ``"host"`` or ``"auto"`` (``"client"``
    when ``compress`` names a codec, else off); ``options`` go to
    :class:`CompressedStore` (thresholds, compaction, zstd level).  With no
    compression, no deduplication and no options, the plain :class:`RamStore`.
    """
    if compress not in COMPRESSORS:
        names = ", ".join(repr(n) for n in COMPRESSORS)
        raise InvalidArgument(f"unknown compressor {compress!r}; choose from {names}")
    if dedup == "auto":
        dedup = None if compress in (None, "none") else "client"
    if dedup not in DEDUP_SCOPES:
        names = ", ".join(repr(n) for n in DEDUP_SCOPES)
        raise InvalidArgument(f"unknown dedup scope {dedup!r}; choose from {names}")
    if compress in (None, "none") and dedup in (None, "none") and not options:
        return RamStore()
    return CompressedStore(compress, dedup, **options)


__all__ = [
    "COMPRESSORS",
    "DEDUP_SCOPES",
    "REJECTED",
    "CompressedStore",
    "PageStore",
    "RamStore",
    "decode_export",
    "make_store",
]

"""Page stores: where the engine's pages live, in memory the store owns."""

from __future__ import annotations

from tmem.errors import InvalidArgument
from tmem.store.base import REJECTED, PageStore
from tmem.store.ram import RamStore

#: Names accepted for ``compress`` (None and "none" both mean no compression).
COMPRESSORS: tuple[str | None, ...] = (None, "none")


def make_store(compress: str | None = None, dedup: str | None = None) -> PageStore:
    """Build the page store for a host's defaults."""
    if compress not in COMPRESSORS:
        raise InvalidArgument(f"unknown compressor {compress!r}; choose from {COMPRESSORS}")
    if dedup is not None:
        raise InvalidArgument(f"unknown dedup scope {dedup!r}")
    return RamStore()


__all__ = ["COMPRESSORS", "REJECTED", "PageStore", "RamStore", "make_store"]

"""What a host charges, from the engine's published constants, for tests that fill
hosts and caps to an exact number of pages."""

from __future__ import annotations

from tmem.engine import OBJECT_METADATA_BYTES, PAGE_METADATA_BYTES, POOL_METADATA_BYTES

PAGE = 4096
#: An uncompressed 4 KiB page and the engine's metadata for it.
COST = PAGE + PAGE_METADATA_BYTES


def room_for(pages: int, objects: int = 1, pools: int = 1, page: int = PAGE) -> int:
    """The bytes that hold exactly ``pages`` uncompressed pages of ``page`` bytes in
    ``objects`` objects of ``pools`` pools: a capacity or a cap that fits them."""
    return (
        pages * (page + PAGE_METADATA_BYTES)
        + objects * OBJECT_METADATA_BYTES
        + pools * POOL_METADATA_BYTES
    )

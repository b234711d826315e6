"""The pure tmem engine: pools, objects, pages, coherency, eviction and accounting."""

from tmem.engine.core import (
    OBJECT_METADATA_BYTES,
    PAGE_METADATA_BYTES,
    POOL_METADATA_BYTES,
    Engine,
)

__all__ = ["Engine", "OBJECT_METADATA_BYTES", "PAGE_METADATA_BYTES", "POOL_METADATA_BYTES"]

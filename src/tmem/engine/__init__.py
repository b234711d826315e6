"""The pure tmem engine: pools, objects, pages, coherency, eviction and accounting."""

from tmem.engine.core import PAGE_METADATA_BYTES, Engine

__all__ = ["Engine", "PAGE_METADATA_BYTES"]

"""The compressors a store can use, as one table of small integer codec ids.

A codec turns a page into bytes and back.  Compressed bytes carry no header of
their own: the store keeps each page's compressed length and page size, so
lz4 runs in raw block mode and zstd writes neither checksum nor content size.
Codec ids are stored per page, so one store can hold pages of every codec at
once (clients switch codecs at run time; old pages stay readable).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, Final

import lz4.block
import zstandard

from tmem.errors import InvalidArgument
from tmem.loader import pure_requested

#: Codec ids kept per page (two bits).
RAW: Final = 0
LZ4: Final = 1
ZSTD: Final = 2
SAME: Final = 3

#: ``compress`` names a client may choose -> codec id (None and "none": stored raw).
CODEC_IDS: dict[str | None, int] = {None: RAW, "none": RAW, "lz4": LZ4, "zstd": ZSTD}

#: Level zstd runs at: 1 is its fastest, and pages are small enough that higher
#: levels buy little (see docs/stores.md).
ZSTD_LEVEL: Final = 1


def codec_id(compress: object) -> int:
    """The codec id for a ``compress`` name, or raise InvalidArgument."""
    try:
        return CODEC_IDS[compress]  # type: ignore[index]
    except (KeyError, TypeError):
        names = ", ".join(repr(n) for n in CODEC_IDS)
        raise InvalidArgument(f"unknown compressor {compress!r}; choose from {names}") from None


def _page_lz4() -> Any:
    """``tmem.store._lz4page`` bound to the lz4 package's library, or None where it
    was not built, that library lacks the functions it calls, or ``TMEM_PURE=1``."""
    if pure_requested():  # TMEM_PURE=1: the pure-Python build, the lz4 package's calls
        return None
    try:
        module: Any = importlib.import_module("tmem.store._lz4page")
        module.bind(importlib.import_module("lz4.block._block").__file__, lz4.block.LZ4BlockError)
    except (ImportError, AttributeError):
        return None
    return module


#: lz4 for one page in C, holding the GIL (same bytes as the lz4 package's; see
#: ``_lz4page.c``), or None: the lz4 package's functions serve instead.
PAGE_LZ4: Final = _page_lz4()

#: Samples :func:`looks_incompressible` takes, and the factor of its test.
SAMPLES: Final = 256
SPREAD: Final = 96
#: Bytes of the first test of :func:`looks_incompressible`, and the distinct values it needs.
FIRST: Final = 64
DISTINCT: Final = 40


def looks_incompressible(page: bytes) -> bool:
    """Guess, without compressing, that lz4 cannot bring ``page`` to 3/4 of its size.

    :data:`FIRST` bytes at a stride of ``len(page) // FIRST`` take at least
    :data:`DISTINCT` values (a cheap first test that most compressible pages
    fail), and :data:`SAMPLES` bytes at an even stride are spread almost evenly
    over the 256 byte values: the sum of the squared count of each value, times
    :data:`SPREAD`, is under ``SAMPLES ** 2`` (a collision entropy above
    log2(96), about 6.6 bits a byte; text and code have 4-5).  Always False
    for pages under :data:`SAMPLES` bytes.  ``_lz4page.incompressible`` is the
    same rule in C.  On the workload's 2,048 corpus pages it picks 334 of the
    465 that lz4 leaves above 3/4, and none of the others (docs/benchmarks.md).
    """
    n = len(page)
    if n < SAMPLES:
        return False
    wide = n // FIRST
    if len(set(page[0 : wide * FIRST : wide])) < DISTINCT:
        return False
    step = n // SAMPLES
    counts = [0] * 256
    for byte in page[0 : step * SAMPLES : step]:
        counts[byte] += 1
    return sum(c * c for c in counts) * SPREAD < SAMPLES * SAMPLES


#: The guess in C where ``_lz4page`` was built, else the same rule in Python.
INCOMPRESSIBLE: Final[Callable[[bytes], bool]] = (
    PAGE_LZ4.incompressible if PAGE_LZ4 is not None else looks_incompressible
)


class Codecs:
    """Compress and decompress functions by codec id (zstd contexts are reused).

    lz4 runs through ``lz4_page`` (:data:`PAGE_LZ4`) where it is there, else
    through the lz4 package; both write the same bytes.
    """

    def __init__(self, zstd_level: int = ZSTD_LEVEL, lz4_page: Any = PAGE_LZ4) -> None:
        zc = zstandard.ZstdCompressor(
            level=zstd_level, write_checksum=False, write_content_size=False, write_dict_id=False
        )
        zd = zstandard.ZstdDecompressor()
        # Bound C functions, no Python wrapper: each put and get calls one of them.
        if lz4_page is not None:
            lz4_compress, lz4_decompress = lz4_page.compress, lz4_page.decompress
        else:
            lz4_compress = functools.partial(lz4.block.compress, store_size=False)
            lz4_decompress = lz4.block.decompress  # (buf, uncompressed_size)
        #: codec id -> compress(page) -> bytes (RAW and SAME have none)
        self.compress: dict[int, Callable[[bytes | memoryview], bytes]] = {
            LZ4: lz4_compress,
            ZSTD: zc.compress,
        }
        #: codec id -> decompress(buf, page_size) -> page
        self.decompress: dict[int, Callable[[bytes | memoryview, int], bytes]] = {
            LZ4: lz4_decompress,
            ZSTD: zd.decompress,  # (buf, max_output_size)
        }

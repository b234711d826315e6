"""A stored page in a portable form: what a store hands a tier, and takes back.

An exported page is one byte of metadata (codec id in bits 0-1, the "stored
raw because it compressed poorly" flag in bit 3, log2(page size) - 9 in bits
4-7; the handle table's ``meta`` bits, see :func:`tmem.store.handles.order_bits`)
followed by the bytes the store kept: the compressed page, the raw page,
or, for a same-filled page, its 8-byte word.  Tiers keep it as it is; a store
adopts it back without compressing again, and :func:`decode_export` turns it
into the page anywhere.
"""

from __future__ import annotations

import lz4.block
import zstandard

from tmem.errors import InvalidArgument
from tmem.store.codecs import RAW, SAME, Codecs
from tmem.store.handles import CODEC_MASK, ORDER_SHIFT

_decompress = Codecs().decompress


def decode_export(blob: bytes) -> bytes:
    """The page an exported page holds; InvalidArgument if it does not decode to one.

    A tier get runs this on its path, so the body is read in place (no copy)."""
    if not blob:
        raise InvalidArgument("an exported page is empty")
    meta = blob[0]
    codec = meta & CODEC_MASK
    n = 512 << (meta >> ORDER_SHIFT)  # page_size_of(meta), inlined
    if codec == RAW:
        page = bytes(blob[1:])
    elif codec == SAME:
        page = blob[1:9] * (n >> 3)
    else:
        try:
            page = _decompress[codec](memoryview(blob)[1:], n)
        except (lz4.block.LZ4BlockError, zstandard.ZstdError) as e:
            raise InvalidArgument(f"an exported page does not decode: {e}") from None
    if len(page) != n:
        raise InvalidArgument(f"an exported page decodes to {len(page)} bytes, not {n}")
    return page

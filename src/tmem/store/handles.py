"""The handle table of the compressed store: one row of flat arrays per stored page.

A reference the engine holds is a handle: a row number here.  The row says
where the page's bytes are (a :mod:`tmem.store.zspool` location, or the fill
word of a same-filled page), how long they are, how they were encoded and how
many references share them.  Compaction rewrites ``loc``; the handle itself
never changes, so the engine's references stay valid.  Free rows are chained
through ``loc``.
"""

from __future__ import annotations

from array import array
from typing import Final

from tmem.store.release import trim_heap

#: ``meta`` bits: codec id in bits 0-1, flags, and log2(page size) - 9 in bits 4-7.
CODEC_MASK: Final = 0x3
INDEXED: Final = 0x4  # the page's hash is in the dedup index
HUGE: Final = 0x8  # stored raw because it compressed poorly
ORDER_SHIFT: Final = 4
_NIL: Final = -1


def order_bits(page_size: int) -> int:
    """The ``meta`` bits that record a page size (a power of two from 512)."""
    return (page_size.bit_length() - 10) << ORDER_SHIFT


def page_size_of(meta: int) -> int:
    """The page size that ``meta`` records (see :func:`order_bits`)."""
    return 512 << (meta >> ORDER_SHIFT)


class HandleTable:
    """Rows ``loc``, ``clen``, ``meta``, ``refs`` (and ``cid``, ``hlo``, ``hhi`` with dedup)."""

    def __init__(self, dedup: bool, initial: int = 1024) -> None:
        self.loc = array("q")
        self.clen = array("I")  # unsigned: stored without argument parsing (cheaper)
        self.meta = array("B")
        self.refs = array("I")
        self.dedup = dedup
        self.cid = array("i")
        self.hlo = array("Q")
        self.hhi = array("Q")
        self._arrays = [self.loc, self.clen, self.meta, self.refs]
        if dedup:
            self._arrays += [self.cid, self.hlo, self.hhi]
        self.free_head = _NIL
        self.size = 0
        self.live = 0
        self.initial = initial
        self._grow(initial)

    @property
    def row_bytes(self) -> int:
        """Bytes of array storage per row."""
        return sum(a.itemsize for a in self._arrays)

    def _grow(self, extra: int) -> None:
        start, end = self.size, self.size + extra
        for arr in self._arrays[1:]:
            arr.frombytes(bytes(extra * arr.itemsize))
        self.loc.extend(range(start + 1, end + 1))
        self.loc[end - 1] = self.free_head
        self.free_head = start
        self.size = end

    def alloc(self, meta: int) -> int:
        """Take a free row with one reference and ``meta``; the caller fills in the rest."""
        h = self.free_head
        if h == _NIL:
            self._grow(max(1024, self.size // 2))
            h = self.free_head
        self.free_head = self.loc[h]
        self.meta[h] = meta
        self.refs[h] = 1
        self.live += 1
        return h

    def release(self, h: int) -> None:
        """Give row ``h`` back (its reference count must be zero).

        The last row given back shrinks the table to its first size, so an
        emptied store holds no rows' memory (the arrays are cut in place: the
        size-class pool holds ``loc`` itself), and trims the C heap where the
        arrays lay (:func:`tmem.store.release.trim_heap`).
        """
        self.loc[h] = self.free_head
        self.free_head = h
        self.live = live = self.live - 1
        if not live and self.size > self.initial:
            for arr in self._arrays:
                del arr[:]
            self.size, self.free_head = 0, _NIL
            self._grow(self.initial)
            trim_heap()

    def set_key(self, h: int, key: int, cid: int) -> None:
        """Record the content hash and client of row ``h``."""
        self.hlo[h] = key & 0xFFFFFFFFFFFFFFFF
        self.hhi[h] = key >> 64
        self.cid[h] = cid

"""The handle table of the compressed store: one row of flat arrays per stored page.

A reference the engine holds is a handle: a row number here.  The row says
where the page's bytes are (a :mod:`tmem.store.zspool` location, or the fill
word of a same-filled page), how long they are, how they were encoded and how
many references share them.  Compaction rewrites ``loc``; the handle itself
never changes, so the engine's references stay valid.  Free rows are chained
through ``loc``.

The rows are ``librt.vecs.vec`` of fixed-width integers: compiled, an item is
read and written in place, where an ``array.array`` item went through a boxed
index and a boxed value on every access.  A vec that grows is a new vec, so
nothing may keep a row array across a call that may allocate a handle: read
them from the table (``table.loc[h]``).
"""

from __future__ import annotations

from typing import Final

from librt.vecs import extend, vec
from mypy_extensions import i32, i64, u8

from tmem.store.release import trim_heap

#: ``meta`` bits: codec id in bits 0-1, flags, and log2(page size) - 9 in bits 4-7.
CODEC_MASK: Final = 0x3
INDEXED: Final = 0x4  # the page's hash is in the dedup index
HUGE: Final = 0x8  # stored raw because it compressed poorly
ORDER_SHIFT: Final = 4
_NIL: Final = -1
#: Bytes per row: ``loc`` 8, ``clen`` 4, ``meta`` 1, ``refs`` 4; with dedup also
#: ``cid`` 4, ``hlo`` 8, ``hhi`` 8.
ROW_BYTES: Final = 17
DEDUP_ROW_BYTES: Final = 37
_MASK64: Final = (1 << 64) - 1
_SIGN64: Final = 1 << 63


def order_bits(page_size: int) -> int:
    """The ``meta`` bits that record a page size (a power of two from 512)."""
    return (page_size.bit_length() - 10) << ORDER_SHIFT


def page_size_of(meta: int) -> int:
    """The page size that ``meta`` records (see :func:`order_bits`)."""
    return 512 << (meta >> ORDER_SHIFT)


def hash_words(key: int) -> tuple[int, int]:
    """A 128-bit hash as the two signed 64-bit words ``hlo`` and ``hhi`` keep."""
    lo, hi = key & _MASK64, key >> 64
    if lo >= _SIGN64:
        lo -= 1 << 64
    if hi >= _SIGN64:
        hi -= 1 << 64
    return lo, hi


class HandleTable:
    """Rows ``loc``, ``clen``, ``meta``, ``refs`` (and ``cid``, ``hlo``, ``hhi`` with dedup)."""

    def __init__(self, dedup: bool, initial: int = 1024) -> None:
        self.loc: vec[i64] = vec[i64]()
        self.clen: vec[i32] = vec[i32]()
        self.meta: vec[u8] = vec[u8]()
        self.refs: vec[i32] = vec[i32]()
        self.dedup = dedup
        self.cid: vec[i32] = vec[i32]()
        self.hlo: vec[i64] = vec[i64]()
        self.hhi: vec[i64] = vec[i64]()
        self.free_head = _NIL
        self.size = 0
        self.live = 0
        self.initial = initial
        self._grow(initial)

    @property
    def row_bytes(self) -> int:
        """Bytes of array storage per row."""
        return DEDUP_ROW_BYTES if self.dedup else ROW_BYTES

    def _grow(self, extra: int) -> None:
        start, end = self.size, self.size + extra
        # A vec extended by a vec of its own type is one copy: zeros are made by doubling.
        longs, ints, bytes_ = vec[i64]([0]), vec[i32]([0]), vec[u8]([0])
        while len(ints) < extra:
            longs, ints, bytes_ = extend(longs, longs), extend(ints, ints), extend(bytes_, bytes_)
        longs, ints, bytes_ = longs[:extra], ints[:extra], bytes_[:extra]
        loc = extend(self.loc, longs)
        for h in range(start, end - 1):  # the new rows, chained in order
            loc[h] = h + 1
        loc[end - 1] = self.free_head
        self.loc = loc
        self.clen = extend(self.clen, ints)
        self.meta = extend(self.meta, bytes_)
        self.refs = extend(self.refs, ints)
        if self.dedup:
            self.cid = extend(self.cid, ints)
            self.hlo = extend(self.hlo, longs)
            self.hhi = extend(self.hhi, longs)
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
        emptied store holds no rows' memory, and trims the C heap where the
        rows lay (:func:`tmem.store.release.trim_heap`).
        """
        self.loc[h] = self.free_head
        self.free_head = h
        self.live = live = self.live - 1
        if not live and self.size > self.initial:
            self.loc, self.clen, self.meta = vec[i64](), vec[i32](), vec[u8]()
            self.refs, self.cid = vec[i32](), vec[i32]()
            self.hlo, self.hhi = vec[i64](), vec[i64]()
            self.size, self.free_head = 0, _NIL
            self._grow(self.initial)
            trim_heap()

    def set_key(self, h: int, key: int, cid: int) -> None:
        """Record the content hash and client of row ``h``."""
        self.hlo[h], self.hhi[h] = hash_words(key)
        self.cid[h] = cid

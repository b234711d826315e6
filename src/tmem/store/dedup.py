"""The deduplication index: content hash -> handle, in one flat array.

An open-addressing hash table (linear probing) of handles in an
``array("q")``; the hashes themselves live in the handle table's ``hlo`` and
``hhi`` rows, so an entry costs 8 bytes of table per slot and no Python
object.  The table is rebuilt half full when it passes three fifths full
(tombstones count as full) or drops below an eighth; it is empty (no
memory at all) while nothing is indexed.  Its real size is what the store
counts in its bytes in use; each indexed page is charged
:data:`INDEX_ENTRY_BYTES`, its share at the table's target load.
"""

from __future__ import annotations

from array import array
from typing import Final

from tmem.store.handles import HandleTable, hash_words

_EMPTY: Final = -1
_GONE: Final = -2
MIN_SLOTS: Final = 64
#: Bytes of table per entry at the target load of one half (8-byte slots).
INDEX_ENTRY_BYTES: Final = 8 * 2


class DedupIndex:
    """Finds the handle whose recorded 128-bit hash equals a key."""

    def __init__(self, table: HandleTable) -> None:
        self.table = table
        self.slots = array("q")
        self.mask = -1
        self.live = 0
        self.filled = 0  # live entries and tombstones

    def __len__(self) -> int:
        return self.live

    @property
    def table_bytes(self) -> int:
        """Bytes the table occupies now."""
        return len(self.slots) * self.slots.itemsize

    def find(self, key: int) -> int:
        """The handle recorded under ``key``, or -1."""
        lo, hi = hash_words(key)
        slots, mask, hlo, hhi = self.slots, self.mask, self.table.hlo, self.table.hhi
        if mask < 0:
            return -1
        i = lo & mask
        while True:
            h = slots[i]
            if h == _EMPTY:
                return -1
            if h >= 0 and hlo[h] == lo and hhi[h] == hi:
                return h
            i = (i + 1) & mask

    def add(self, h: int) -> int:
        """Index handle ``h`` under the hash in its row; return the table's growth in bytes."""
        grown = 0
        if (self.filled + 1) * 5 > len(self.slots) * 3:
            grown = self._resize(self.live + 1)
        slots, mask = self.slots, self.mask
        i = self.table.hlo[h] & mask
        while slots[i] >= 0:
            i = (i + 1) & mask
        if slots[i] == _EMPTY:
            self.filled += 1
        slots[i] = h
        self.live += 1
        return grown

    def remove(self, h: int) -> int:
        """Take handle ``h`` out of the index; return the table's growth in bytes (<= 0)."""
        slots, mask = self.slots, self.mask
        i = self.table.hlo[h] & mask
        while slots[i] != h:
            i = (i + 1) & mask
        slots[i] = _GONE
        self.live -= 1
        if self.live * 8 < len(slots):
            return self._resize(self.live)
        return 0

    def _resize(self, live: int) -> int:
        """Rebuild for ``live`` entries, at most half full (empty for none); the growth in bytes."""
        before = self.table_bytes
        size = MIN_SLOTS if live else 0
        while size < live * 2:
            size *= 2
        old = [h for h in self.slots if h >= 0]
        self.slots = array("q", [_EMPTY]) * size
        self.mask = size - 1
        self.live = self.filled = 0
        slots, mask, hlo = self.slots, self.mask, self.table.hlo
        for h in old:
            i = hlo[h] & mask
            while slots[i] != _EMPTY:
                i = (i + 1) & mask
            slots[i] = h
        self.live = self.filled = len(old)
        return self.table_bytes - before

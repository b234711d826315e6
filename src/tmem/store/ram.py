"""Plain RAM: each page copied whole into a slot of its own size class."""

from __future__ import annotations

from typing import Any, Final

from tmem.errors import InvalidArgument
from tmem.store.arena import SlotArena
from tmem.store.base import PageStore
from tmem.store.codecs import RAW
from tmem.store.handles import order_bits

_CLASS_BITS: Final = 5  # page sizes 2**9 .. 2**16 give class numbers below 32
#: The size class (log2 of the page size) in the low bits of a reference.
_CLASS_MASK: Final = (1 << _CLASS_BITS) - 1


class RamStore(PageStore):
    """Stores pages uncompressed; a reference is ``slot << 5 | log2(size)``."""

    def __init__(self) -> None:
        self._arenas: dict[int, SlotArena] = {}  # size class -> arena, made on first use
        self.pages = 0
        self.used_bytes = 0

    def put(self, data: bytes | memoryview, persistent: bool, cid: int) -> int:
        size = len(data)
        cls = size.bit_length() - 1
        arena = self._arenas.get(cls)
        if arena is None:
            arena = self._arenas[cls] = SlotArena(1 << cls)
        hot = arena.hot
        if hot:  # arena.alloc() of a slot freed lately, inline: a full host's put
            slot = hot.pop()
            arena.used += 1
        else:
            slot = arena.alloc()
        # arena.write, inline: a put is the hot path, and a slot here is a whole page
        per = arena.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) << cls
        arena.chunks[chunk][start : start + size] = data
        self.pages += 1
        self.used_bytes += size
        return slot << _CLASS_BITS | cls

    def get(self, ref: int) -> bytes:
        arena = self._arenas[ref & _CLASS_MASK]
        slot, per = ref >> _CLASS_BITS, arena.per_chunk
        chunk = slot // per
        start = (slot - chunk * per) * arena.slot_size
        return arena.chunks[chunk][start : start + arena.slot_size]

    def free(self, ref: int) -> None:
        cls = ref & _CLASS_MASK
        arena = self._arenas[cls]
        hot = arena.hot
        if len(hot) < arena.hot_limit and arena.used > 1:
            # arena.free() of a slot kept for reuse, inline: an eviction's or a flush's
            arena.used -= 1
            hot.append(ref >> _CLASS_BITS)
        else:
            arena.free(ref >> _CLASS_BITS)
        self.pages -= 1
        self.used_bytes -= 1 << cls

    def export(self, ref: int) -> bytes:
        """The page under ``ref`` for a tier: a raw page (see :mod:`tmem.store.export`)."""
        return bytes((RAW | order_bits(1 << (ref & _CLASS_MASK)),)) + self.get(ref)

    def adopt(self, blob: bytes, persistent: bool, cid: int) -> int:
        """Store an exported raw page again."""
        return self.put(memoryview(blob)[1:], persistent, cid)

    def poor(self, ref: int) -> bool:
        """Never: raw pages are what every page here is."""
        return False

    def refuse(self, ref: int) -> None:
        """Free ``ref`` (this store refuses nothing for its content)."""
        self.free(ref)

    def charge(self, ref: int) -> int:
        return 1 << (ref & _CLASS_MASK)

    def configure_client(self, cid: int, compress: Any) -> None:
        if compress not in (None, "none"):
            raise InvalidArgument(
                f"this host stores pages raw and cannot compress them ({compress!r});"
                " build it with compress='lz4' or 'zstd' to let clients choose"
            )

    def forget_client(self, cid: int) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        arenas = list(self._arenas.values())
        data = sum(a.used * a.slot_size for a in arenas)
        return {
            "store": "ram",
            "stored_pages": self.pages,
            "orig_data_size": data,
            "compr_data_size": data,
            "mem_used_total": sum(a.resident_bytes for a in arenas),
        }

"""The compressed, deduplicating page store (zcache and Xen tmem's density).

A put goes through these steps, each counted:

1. **Same-filled pages** (one 8-byte word repeated, zeros above all) keep only
   the word, in the page's handle row: no slot at all (zram's ``same_pages``).
2. **Deduplication** (``dedup="client"`` or ``"host"``): the page's xxh3-128
   hash, seeded with the client id when the scope is one client, looks up a
   stored page; the bytes are compared before the page is shared, and a hit
   only adds a reference (``dedup_hits``).  Stored content is never changed, so
   a later put or flush of one handle cannot change what another reads.
3. **Compression** with the client's codec (lz4, zstd, or none).  A page that
   compresses to more than ``max_compressed_fraction`` of its size is stored
   raw (``huge_pages``).  With lz4 and a fraction of at most 3/4, a page whose
   sampled bytes are spread almost evenly over all byte values
   (:func:`tmem.store.codecs.looks_incompressible`) is stored raw without
   being compressed first (``guessed_poor``, counted in ``huge_pages`` too).
   For an ephemeral page the engine decides: it admits such a page like any
   other and lets it go sooner than better compressed pages
   (:func:`tmem.engine.victims.least_recent`); :meth:`CompressedStore.refuse`
   (``reject_compress_poor``) is there for an engine that refuses it.  With
   ``max_mean_fraction`` set, an ephemeral page larger than that fraction is
   refused while the mean compressed size of stored pages is above it
   (``reject_mean_size``).
4. The bytes go into a :class:`tmem.store.zspool.ZsPool` size class.

Accounting: ``used_bytes`` is the slots in use (with rounding) plus the
handle rows and dedup index entries of stored content, each counted once
however many references share it; ``charge`` is one page's full footprint,
what every holder of a shared page is charged.  Holes left by freed slots are
not in ``used_bytes``: compaction keeps them under ``compact_fraction`` of each
class, and ``mem_used_total`` (what the store holds, holes included) shows them.
"""

from __future__ import annotations

from typing import Any, Final

import xxhash

from tmem.errors import InvalidArgument
from tmem.store.base import REJECTED, PageStore
from tmem.store.codecs import INCOMPRESSIBLE, LZ4, RAW, SAME, Codecs, codec_id
from tmem.store.dedup import INDEX_ENTRY_BYTES, DedupIndex
from tmem.store.handles import CODEC_MASK, HUGE, INDEXED, HandleTable, order_bits, page_size_of
from tmem.store.zspool import CLASS_MASK, OWNER_BYTES, SLOT_SIZE, ZsPool

DEDUP_SCOPES: tuple[str | None, ...] = (None, "none", "client", "host")
_hash = xxhash.xxh3_128_intdigest
#: What _share answers when the indexed page only shares the new page's hash.
_COLLISION: Final = -2
#: The incompressibility guess is taken only where pages above this fraction are kept
#: raw anyway (it was measured against lz4 at 3/4).
GUESS_FRACTION: Final = 0.75


class CompressedStore(PageStore):
    """Pages compressed per client, deduplicated within ``dedup``'s scope, in size classes."""

    def __init__(
        self,
        # Any: checked here (a compiled store would refuse a wrong type before the check)
        compress: Any = "lz4",
        dedup: Any = "client",
        max_compressed_fraction: Any = 0.75,
        max_mean_fraction: Any = None,
        compact_fraction: Any = 1 / 16,
        zstd_level: Any = 1,
        guess_incompressible: Any = True,
    ) -> None:
        self.default_codec = codec_id(compress)
        if dedup not in DEDUP_SCOPES:
            raise InvalidArgument(f"unknown dedup scope {dedup!r}; choose from {DEDUP_SCOPES}")
        _check_fraction("max_compressed_fraction", max_compressed_fraction)
        if max_mean_fraction is not None:
            _check_fraction("max_mean_fraction", max_mean_fraction)
        _check_fraction("compact_fraction", compact_fraction, zero=True)
        if type(zstd_level) is not int or not 1 <= zstd_level <= 22:
            raise InvalidArgument(f"zstd_level {zstd_level!r} must be an integer in [1, 22]")
        if type(guess_incompressible) is not bool:
            raise InvalidArgument(f"guess_incompressible {guess_incompressible!r} must be a bool")
        self.dedup: str | None = dedup if dedup != "none" else None
        self.per_client = self.dedup == "client"  # hashes seeded with the client id
        self.max_fraction: float = max_compressed_fraction
        #: lz4 pages that look incompressible are kept raw without compressing them
        self.guess: bool = guess_incompressible and max_compressed_fraction <= GUESS_FRACTION
        self.max_mean: float | None = max_mean_fraction
        self.codecs = Codecs(zstd_level)
        self.table = HandleTable(self.dedup is not None)
        self.pool = ZsPool(self.table, compact_fraction)
        self.index = DedupIndex(self.table)
        self.row_bytes = self.table.row_bytes
        self.clients: dict[int, int] = {}  # cid -> codec id
        self.used_bytes = 0
        self.mem_used_max = 0
        self.logical_pages = 0
        self.orig_data_size = 0  # page bytes of stored content (each once)
        self.compr_data_size = 0  # bytes of stored content as kept (each once)
        self.comp_orig = 0  # the same two, for compressed pages only (mean cap)
        self.comp_size = 0
        self.same_pages = 0
        self.huge_pages = 0
        self.raw_pages = 0
        self.counters = dict.fromkeys(
            ("dedup_hits", "reject_compress_poor", "reject_mean_size", "huge_pages_since",
             "same_filled_puts", "hash_collisions", "guessed_poor"), 0)  # fmt: skip

    # --- clients ---------------------------------------------------------

    def configure_client(self, cid: int, compress: Any) -> None:
        """Compress client ``cid``'s future pages with ``compress`` (None: raw)."""
        self.clients[cid] = codec_id(compress)

    def forget_client(self, cid: int) -> None:
        """Drop the client's settings (pages it shared into other pools stay readable)."""
        self.clients.pop(cid, None)

    # --- pages -----------------------------------------------------------

    def put(self, data: bytes | memoryview, persistent: bool, cid: int) -> int:
        """Store a page; return its handle, or REJECTED (counted by reason)."""
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        word = data[:8]
        if word == data[-8:] and word * (n >> 3) == data:
            return self._put_same(word, n)
        key = -1
        if self.dedup:
            key = _hash(data, cid if self.per_client else 0)
            h = self.index.find(key)
            if h >= 0:
                shared = self._share(h, data, persistent, cid)
                if shared != _COLLISION:
                    return shared
                key = -1  # a true hash collision: store this page unindexed
        codec = self.clients.get(cid, self.default_codec)
        if codec == RAW:
            self.raw_pages += 1
            return self._put_bytes(data, RAW, n, key, cid)
        if codec == LZ4 and self.guess and INCOMPRESSIBLE(data):
            self.counters["guessed_poor"] += 1
            size = n + 1  # kept raw, as a page lz4 could not bring under the fraction
            packed = data
        else:
            packed = self.codecs.compress[codec](data)
            size = len(packed)
        if size > n * self.max_fraction:
            # Kept raw (zswap's incompressible pages); the engine lets an ephemeral one
            # go sooner than better compressed pages (see :meth:`poor`).
            self.huge_pages += 1
            self.counters["huge_pages_since"] += 1
            return self._put_bytes(data, RAW | HUGE, n, key, cid)
        if (
            self.max_mean is not None
            and not persistent
            and size > n * self.max_mean
            and self.comp_size > self.max_mean * self.comp_orig
        ):
            self.counters["reject_mean_size"] += 1
            return REJECTED
        self.comp_orig += n
        self.comp_size += size
        return self._put_bytes(packed, codec, n, key, cid)

    def _put_same(self, word: bytes, n: int) -> int:
        h = self.table.alloc(SAME | order_bits(n))
        self.table.loc[h] = int.from_bytes(word, "little", signed=True)
        self.table.clen[h] = 0
        self.same_pages += 1
        self.counters["same_filled_puts"] += 1
        self._account(n, 0, self.row_bytes)
        return h

    def _share(self, h: int, data: bytes, persistent: bool, cid: int) -> int:
        """Add a reference to stored page ``h`` if it holds ``data``; _COLLISION if not."""
        table = self.table
        if self.per_client and table.cid[h] != cid or self.get(h) != data:
            self.counters["hash_collisions"] += 1
            return _COLLISION
        table.refs[h] += 1
        self.logical_pages += 1
        self.counters["dedup_hits"] += 1
        return h

    def _put_bytes(self, stored: bytes, meta: int, n: int, key: int, cid: int) -> int:
        table, pool = self.table, self.pool
        if key >= 0:
            meta |= INDEXED
        h = table.alloc(meta | order_bits(n))
        size = len(stored)
        loc = table.loc[h] = pool.store(stored, h)
        table.clen[h] = size
        footprint = self.row_bytes + OWNER_BYTES + SLOT_SIZE[loc & CLASS_MASK]
        if key >= 0:
            table.set_key(h, key, cid)
            footprint += self.index.add(h)  # the table's own growth, when it grows
        self._account(n, size, footprint)
        return h

    def _account(self, n: int, size: int, footprint: int) -> None:
        self.logical_pages += 1
        self.orig_data_size += n
        self.compr_data_size += size
        used = self.used_bytes = self.used_bytes + footprint
        if used > self.mem_used_max:
            self.mem_used_max = used

    def get(self, ref: int) -> bytes:
        """A copy of the page under ``ref``."""
        table = self.table
        meta = table.meta[ref]
        codec = meta & CODEC_MASK
        n = page_size_of(meta)
        if codec == SAME:
            word: int = table.loc[ref]
            return word.to_bytes(8, "little", signed=True) * (n >> 3)
        stored = self.pool.read(table.loc[ref], table.clen[ref])
        if codec == RAW:
            return stored
        return self.codecs.decompress[codec](stored, n)

    def export(self, ref: int) -> bytes:
        """The page under ``ref`` as stored, for a tier (see :mod:`tmem.store.export`)."""
        table = self.table
        meta = int(table.meta[ref]) & ~INDEXED
        if meta & CODEC_MASK == SAME:
            word: int = table.loc[ref]
            return bytes((meta,)) + word.to_bytes(8, "little", signed=True)
        return bytes((meta,)) + self.pool.read(table.loc[ref], table.clen[ref])

    def adopt(self, blob: bytes, persistent: bool, cid: int) -> int:
        """Store an exported page again as it is (no compression, no dedup lookup)."""
        meta = blob[0] & ~INDEXED
        codec = meta & CODEC_MASK
        n = page_size_of(meta)
        if codec == SAME:
            return self._put_same(bytes(blob[1:9]), n)
        stored = bytes(blob[1:])
        if meta & HUGE:
            self.huge_pages += 1
        elif codec == RAW:
            self.raw_pages += 1
        else:
            self.comp_orig += n
            self.comp_size += len(stored)
        return self._put_bytes(stored, meta & (CODEC_MASK | HUGE), n, -1, cid)

    def poor(self, ref: int) -> bool:
        """True if the page compressed poorly and is kept raw (a huge page)."""
        return bool(self.table.meta[ref] & HUGE)

    def refuse(self, ref: int) -> None:
        """Free a page just stored because it compressed poorly: counted as refused."""
        self.counters["reject_compress_poor"] += 1
        self.free(ref)

    def charge(self, ref: int) -> int:
        """The page's full footprint: its slot (with rounding) and its metadata.

        Metadata is the handle row, the pool's owner entry and, for an indexed
        page, its share of the dedup index at the index's target load.
        ``used_bytes`` counts all but that share (it counts the index table
        at its real size).
        """
        table = self.table
        meta = table.meta[ref]
        if meta & CODEC_MASK == SAME:
            cost = self.row_bytes
        else:
            cost = self.row_bytes + OWNER_BYTES + SLOT_SIZE[table.loc[ref] & CLASS_MASK]
        return cost + INDEX_ENTRY_BYTES if meta & INDEXED else cost

    def free(self, ref: int) -> None:
        """Drop one reference; the content goes with its last reference."""
        table = self.table
        self.logical_pages -= 1
        refs = table.refs[ref] - 1
        table.refs[ref] = refs
        if refs:
            return
        meta = table.meta[ref]
        # its footprint: the index table's own size is counted apart (see the module)
        self.used_bytes -= self.charge(ref) - (INDEX_ENTRY_BYTES if meta & INDEXED else 0)
        codec = meta & CODEC_MASK
        n = page_size_of(meta)
        self.orig_data_size -= n
        size = table.clen[ref]
        self.compr_data_size -= size
        if codec == SAME:
            self.same_pages -= 1
        else:
            if meta & HUGE:
                self.huge_pages -= 1
            elif codec == RAW:
                self.raw_pages -= 1
            else:
                self.comp_orig -= n
                self.comp_size -= size
            if meta & INDEXED:
                self.used_bytes += self.index.remove(ref)
            self.pool.free(table.loc[ref])
        table.release(ref)

    def compact(self) -> int:
        """Compact every size class now; return the objects moved."""
        return self.pool.compact()

    # --- statistics ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """zram ``mm_stat`` names, zswap-style reject counters, dedup and compaction figures."""
        pool = self.pool.stats()
        meta = self.used_bytes - pool["slot_bytes"]
        out: dict[str, Any] = {
            "store": "compressed",
            "compress": _codec_name(self.default_codec),
            "dedup": self.dedup,
            "stored_pages": self.table.live,
            "logical_pages": self.logical_pages,
            "orig_data_size": self.orig_data_size,
            "compr_data_size": self.compr_data_size,
            "mem_used_total": pool["arena_resident_bytes"] + meta,
            "mem_used_max": self.mem_used_max,
            "used_bytes": self.used_bytes,
            "metadata_bytes": meta,
            "same_pages": self.same_pages,
            "huge_pages": self.huge_pages,
            "raw_pages": self.raw_pages,
            "pages_compacted": pool["pages_compacted"],
        }
        out.update(self.counters)
        out.update(pool)
        return out


def _check_fraction(name: str, value: object, zero: bool = False) -> None:
    """Raise InvalidArgument unless ``value`` is a number in (0, 1], or [0, 1] with ``zero``."""
    if type(value) not in (int, float) or not (0 <= value <= 1 if zero else 0 < value <= 1):  # type: ignore[operator]
        low = "[0" if zero else "(0"
        raise InvalidArgument(f"{name} {value!r} must be a number in {low}, 1]")


def _codec_name(codec: int) -> str | None:
    return {RAW: None, LZ4: "lz4"}.get(codec, "zstd")

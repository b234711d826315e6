"""What the engine's records of its pages and objects cost in memory, and so what
it charges for them.

The charges are not typed in: they are worked out when the module loads,
from the sizes this interpreter gives the structures the engine keeps
(``sys.getsizeof`` of its ints and dicts, the item sizes of the page table's
arrays), so they follow the structures and the Python version.
``bench/metadata.py`` fills hosts in several shapes and sets what the process
really grew (RSS, tracemalloc) beside these charges and beside
:func:`structure_bytes`, the same structures summed after the fill.

A **page** costs (:data:`PAGE_METADATA_BYTES`):

* its slot in every array of the page table (:class:`~tmem.engine.pages.PageTable`),
  times the table's mean growth slack: the table grows by half when full, so
  between one and one and a half slots are held a page, 1.22 on average over
  a growth;
* its entry in its object's dict of pages (index -> page id): the mean bytes
  an entry costs while a dict of ints grows, between 27 and 60 bytes as the
  dict fills up and is resized;
* two int objects: its index and its page id in that dict.

An **object** costs (:data:`OBJECT_METADATA_BYTES`): its dict of pages apart
from the entries (a one-page dict less one entry), its entry in the pool's
dict of objects, and one 192-bit object id, the largest the contract allows
(the engine keeps one copy of an object id of 2**62 or more for all the
pages of an object).

So the charge follows the object shape: ``PAGE + OBJECT / pages per object``
a page.  Where it is not exact: a page whose index is below 257 (the
interpreter's cached small ints) costs 32 bytes less than charged; a dict's
entry costs between 27 and 60 bytes, not its mean, at any moment; and in a
compiled build an object id from 257 to ``2**62 - 1`` is boxed anew for
every page the page table holds (32 bytes a page more than charged; the
shipped frontends use ids 0-15, frontswap, and 192-bit ids, cleancache).
The clients' handle tables of the adaptive order and the ghost lists (bounded
per client, :mod:`tmem.setdueling`) and a pool's records
(:data:`POOL_METADATA_BYTES`, measured by ``bench/engine.py --metadata``) are
not per page.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

from librt.vecs import vec
from mypy_extensions import i32, i64, u8

#: Bytes the interpreter's small-object allocator rounds every object up to.
_ALIGN: Final = 16
#: The largest int the interpreter keeps one shared object of.
SMALL_INT: Final = 256
#: The table grows by half when full (:data:`tmem.engine.pages.GROWTH` aside).
_GROWTH_FACTOR: Final = 1.5


def object_bytes(obj: object) -> int:
    """Heap bytes of ``obj`` itself, as the allocator hands them out."""
    size: int = sys.getsizeof(obj)
    return -(-size // _ALIGN) * _ALIGN


def int_bytes(value: int) -> int:
    """Heap bytes of a fresh int of ``value`` (0 for the interpreter's cached ones)."""
    if -5 <= value <= SMALL_INT:
        return 0
    return object_bytes(value)


def vec_item_bytes(array: object) -> int:
    """Bytes an item of a ``librt.vecs.vec`` takes, from its type (``vec[i32]``: 4)."""
    name = type(array).__name__
    return int(name[name.index("[") + 2 : name.index("]")]) // 8


def table_slot_bytes() -> int:
    """Bytes one page id takes across the page table's arrays and its object-id list."""
    # The arrays of pages.PageTable, one of each item type per field.
    arrays: list[object] = [
        vec[i64](),  # ref
        vec[i32](),  # cost
        vec[i32](),  # pool
        vec[i64](),  # index
        vec[i32](),  # prev
        vec[i32](),  # next
        vec[i64](),  # ver
        vec[u8](),  # tier
        vec[i32](),  # tlen
    ]
    pointer: int = sys.getsizeof([0, 0]) - sys.getsizeof([0])  # one list item
    return sum(vec_item_bytes(a) for a in arrays) + pointer


def growth_slack() -> float:
    """Mean slots held per page while a table that grows by half fills once."""
    g = _GROWTH_FACTOR
    return math.log(g) / (1 - 1 / g)


def dict_entry_bytes(start: int = 1 << 13) -> float:
    """Mean bytes an entry of a dict of ints costs while it grows, one item at a time,
    from ``start`` to ``4 * start`` entries (two resizes), each count weighted alike
    on a log scale (``1 / n``)."""
    d: dict[int, int] = {}
    total = weight = 0.0
    for n in range(1, 4 * start):
        d[n] = n
        if n >= start:
            w = 1.0 / n
            total += w * sys.getsizeof(d) / n
            weight += w
    return total / weight


def _page_bytes(entry: float) -> int:
    index_and_pid = 2 * int_bytes(1 << 20)
    slot = table_slot_bytes() * growth_slack()
    return math.ceil(slot + entry + index_and_pid)


def _object_bytes(entry: float) -> int:
    own_dict = object_bytes({SMALL_INT + 1: SMALL_INT + 1}) - entry  # less its one entry
    return math.ceil(own_dict + entry + int_bytes((1 << 192) - 1))


# Grows a dict to 32k entries, so it runs once for both charges.
_DICT_ENTRY_BYTES: Final = dict_entry_bytes()
#: Bytes charged per stored page (see the module's docstring).
PAGE_METADATA_BYTES: Final = _page_bytes(_DICT_ENTRY_BYTES)
#: Bytes charged per object: its dict of pages, its entry in its pool's, its id.
OBJECT_METADATA_BYTES: Final = _object_bytes(_DICT_ENTRY_BYTES)
#: Bytes charged per pool: its record, its dicts and the host's and client's
#: entries (measured resident by ``bench/engine.py --metadata`` and rounded up).
POOL_METADATA_BYTES: Final = 768
#: Object ids from here up are kept once an object (boxed ints, shared by reference).
SHARED_OID: Final = 1 << 62


def structure_bytes(engine: Any) -> dict[str, int]:
    """Bytes the engine's records hold now, by structure (for ``bench/metadata.py``
    and the tests): the page table (every slot), the pools' dicts, the ints in
    them beyond the cached small ones, each distinct object id the page table
    holds, and the clients' handle tables (the adaptive order's and the ghosts',
    their keys and the ints in those)."""
    table = engine.table
    arrays = [table.ref, table.cost, table.pool, table.index, table.prev, table.next]
    arrays += [table.ver, table.tier, table.tlen]
    table_bytes = sum(len(a) * vec_item_bytes(a) for a in arrays) + object_bytes(table.oid)
    dicts = ints = 0
    for pool in engine.pools.values():
        dicts += object_bytes(pool.objs)
        for pages in pool.objs.values():
            dicts += object_bytes(pages)
            for index, pid in pages.items():
                ints += int_bytes(index) + int_bytes(pid)
    seen: set[int] = set()
    oids = 0
    for oid in table.oid:
        if id(oid) not in seen:
            seen.add(id(oid))
            oids += int_bytes(oid)
    handles = 0
    for client in engine.clients.values():
        handles += handle_table_bytes(client.duel.handles, seen)
    return {"table": table_bytes, "dicts": dicts, "ints": ints, "oids": oids, "handles": handles}


def handle_table_bytes(handles: Any, seen: set[int]) -> int:
    """Bytes of one :class:`tmem.setdueling.Handles` table: its dict, its key list, its
    arrays, and every key (a tuple of ints) with the ints in it not in ``seen``
    (ids of objects already counted; those counted here are added)."""
    total = object_bytes(handles._slot) + object_bytes(handles._keys)
    for array in (handles._prev, handles._next, handles._in):
        total += len(array) * vec_item_bytes(array)
    for key in handles._keys:
        if isinstance(key, tuple):
            total += object_bytes(key)
            for part in key:
                if id(part) not in seen:
                    seen.add(id(part))
                    total += int_bytes(part)
    return total

"""The client and administration interfaces every tmem host offers.

Programs, frontends and tests are written against these Protocols; the
embedded host (:class:`tmem.Host`) and the daemon's remote client implement
them.  The limits and the argument checks (:mod:`tmem.arguments`, compiled
with the engine) and the tables of counter names are read from here, so code
and docs read them from one place.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from tmem.arguments import (  # the checks, compiled: see tmem.arguments
    DEFAULT_PAGE_SIZE,
    INDEX_LIMIT,
    MAX_NAME,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    OID_LIMIT,
    as_page,
    batch_item,
    check_cap,
    check_capacity,
    check_handle,
    check_name,
    check_page_size,
    check_uuid,
    check_weight,
    settle_batch,
)

__all__ = [
    "Admin",
    "Client",
    "DEFAULT_PAGE_SIZE",
    "INDEX_LIMIT",
    "MAX_NAME",
    "MAX_PAGE_SIZE",
    "MIN_PAGE_SIZE",
    "OID_LIMIT",
    "OP_COUNTERS",
    "RECORD_FLUSH_OBJECT",
    "RECORD_FLUSH_PAGE",
    "RECORD_PAGE",
    "REJECT_REASONS",
    "Record",
    "Stats",
    "as_page",
    "batch_item",
    "check_cap",
    "check_capacity",
    "check_handle",
    "check_name",
    "check_page_size",
    "check_uuid",
    "check_weight",
    "settle_batch",
]

#: Operation counters kept per pool and per client, with Xen tmem's names.
OP_COUNTERS: tuple[str, ...] = (
    "puts",
    "succ_puts",
    "failed_puts",
    "gets",
    "succ_gets",
    "flushes",
    "flush_objects",
    "evictions",
)

#: Why a put was refused; each reason has its own counter (``reject_<reason>``).
REJECT_REASONS: tuple[str, ...] = (
    "frozen",  # the administrator froze the client
    "cap",  # the client's cap would be exceeded and nothing of its own can go
    "capacity",  # the host is full of pages it may not evict
    "share",  # persistent pages nearly fill the host and this client is past its share
    "store",  # the page store refused the page (see the store's own counters)
)

Stats = dict[str, Any]

#: Kinds of transfer records (save files, migration): a page to store; a page,
#: or a whole object, to flush.  A record is ``(kind, pool, oid, index, codec, data)``.
RECORD_PAGE, RECORD_FLUSH_PAGE, RECORD_FLUSH_OBJECT = 1, 2, 3
Record = tuple[int, int, int, int, int, bytes]


@runtime_checkable
class Client(Protocol):
    """What a tmem client can do: copy whole pages in and out of its pools.

    Every put may be rejected (``False``) and every get of an ephemeral page may
    miss (``None``); callers keep their own fallback.
    """

    def new_pool(
        self,
        persistent: bool = False,
        shared: bool = False,
        uuid: _uuid.UUID | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> int:
        """Create (or, for a shared uuid, join) a pool; return its id (>= 0)."""
        ...

    def destroy_pool(self, pool: int) -> None:
        """Drop the pool and every page in it; the id is no longer valid."""
        ...

    def put_page(self, pool: int, oid: int, index: int, data: bytes) -> bool:
        """Copy ``data`` into the handle; True if stored, False if rejected."""
        ...

    def get_page(self, pool: int, oid: int, index: int) -> bytes | None:
        """Return a copy of the page at the handle, or None on a miss."""
        ...

    def put_pages(self, pool: int, pages: Iterable[Any], *, errors: str = "raise") -> list[Any]:
        """Put each ``(oid, index, data)`` in order, as by put_page; a bool per page.

        Every item is tried.  With ``errors="raise"`` the first item's error is
        raised once all were tried; with ``errors="return"`` each error takes
        its item's place in the list.
        """
        ...

    def get_pages(self, pool: int, handles: Iterable[Any], *, errors: str = "raise") -> list[Any]:
        """Get each ``(oid, index)`` in order, as by get_page; bytes or None per page."""
        ...

    def flush_page(self, pool: int, oid: int, index: int) -> None:
        """Forget the page at the handle; later gets miss."""
        ...

    def flush_object(self, pool: int, oid: int) -> None:
        """Forget every page of the object; later gets of any of them miss."""
        ...

    def stats(self) -> Stats:
        """Counters of this client, with per-pool counters under ``"pools"``."""
        ...

    def close(self) -> None:
        """Leave the host: private pools and their pages are released."""
        ...


@runtime_checkable
class Admin(Protocol):
    """Administration of a host: capacity, per-client policy, shared-pool rights."""

    def authorize_shared(self, client: str, uuid: _uuid.UUID) -> None:
        """Allow the named client to create or join the shared pool ``uuid``."""
        ...

    def revoke_shared(self, client: str, uuid: _uuid.UUID) -> None:
        """Withdraw that right; a client that joined the pool leaves it at once."""
        ...

    def set_capacity(self, capacity: int) -> None:
        """Change the bytes the host may spend on pages; evicts ephemeral pages to fit."""
        ...

    def set_client(
        self,
        name: str,
        *,
        weight: int | None = None,
        cap: int | None | object = ...,
        compress: str | None | object = ...,
        frozen: bool | None = None,
    ) -> None:
        """Change a client's weight, cap, compression or frozen state."""
        ...

    def stats(self) -> Stats:
        """Host totals, capacity, ratios, and every client's counters."""
        ...

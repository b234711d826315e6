"""The client and administration interfaces every tmem host offers.

Programs, frontends and tests are written against these Protocols; the
embedded host (:class:`tmem.Host`) and the daemon's remote client implement
them.  The tables of limits and counter names live here too, so code and
docs read them from one place.
"""

from __future__ import annotations

import operator
import uuid as _uuid
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from tmem.errors import InvalidArgument, TmemError

#: A page handle's object id lies in [0, OID_LIMIT): room for a 192-bit file handle.
OID_LIMIT = 1 << 192
#: A page handle's index lies in [0, INDEX_LIMIT).
INDEX_LIMIT = 1 << 32
#: Pool page sizes are powers of two in this range (bytes).
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536
DEFAULT_PAGE_SIZE = 4096


def check_page_size(page_size: Any) -> int:
    """Return ``page_size`` if it is a power of two from 512 to 65536, else raise."""
    if (
        type(page_size) is not int
        or not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE
        or page_size & (page_size - 1)
    ):
        raise InvalidArgument(f"page size {page_size!r} is not a power of two in [512, 65536]")
    return page_size


def check_handle(oid: Any, index: Any) -> tuple[int, int]:
    """Return ``(oid, index)`` as ints, or raise InvalidArgument if either is out of range."""
    if (  # the common case, decided first
        type(oid) is int
        and type(index) is int
        and 0 <= oid < OID_LIMIT
        and 0 <= index < INDEX_LIMIT
    ):
        return oid, index
    if isinstance(oid, bool) or isinstance(index, bool):
        raise InvalidArgument(f"object id and index must be integers, not {oid!r}, {index!r}")
    try:
        oid = operator.index(oid)
        index = operator.index(index)
    except TypeError:
        raise InvalidArgument(
            f"object id and index must be integers, not {oid!r}, {index!r}"
        ) from None
    if not 0 <= oid < OID_LIMIT:
        raise InvalidArgument(f"object id {oid!r} is outside [0, 2**192)")
    if not 0 <= index < INDEX_LIMIT:
        raise InvalidArgument(f"page index {index!r} is outside [0, 2**32)")
    return oid, index


def as_page(data: Any, page_size: int | None = None) -> bytes | memoryview:
    """``data`` as a byte buffer of ``page_size`` bytes (None: at most MAX_PAGE_SIZE), or raise."""
    page: bytes | memoryview
    if type(data) is bytes:
        page = data
    else:
        try:
            page = memoryview(data).cast("B")
        except TypeError:
            raise InvalidArgument(
                f"page data must be bytes-like, not {type(data).__name__}"
            ) from None
    if page_size is None:
        if len(page) > MAX_PAGE_SIZE:
            raise InvalidArgument(
                f"page data is {len(page)} bytes; pages are at most {MAX_PAGE_SIZE}"
            )
    elif len(page) != page_size:
        raise InvalidArgument(f"page data is {len(page)} bytes; this pool's pages are {page_size}")
    return page


def check_uuid(uuid: Any) -> _uuid.UUID:
    """Return ``uuid`` if it is a :class:`uuid.UUID` (a shared pool's name), else raise."""
    if not isinstance(uuid, _uuid.UUID):
        raise InvalidArgument(f"a shared pool needs a uuid.UUID, not {uuid!r}")
    return uuid


def check_weight(weight: Any) -> int:
    """Return ``weight`` if it is a positive int, else raise."""
    if type(weight) is not int or weight < 1:
        raise InvalidArgument(f"weight {weight!r} must be a positive integer")
    return weight


def check_cap(cap: Any) -> int | None:
    """Return ``cap`` if it is a byte count >= 0 or None (no cap), else raise."""
    if cap is not None and (type(cap) is not int or cap < 0):
        raise InvalidArgument(f"cap {cap!r} must be a byte count >= 0, or None")
    return cap


def check_capacity(capacity: Any) -> int:
    """Return ``capacity`` if it is a byte count >= 0, else raise."""
    if type(capacity) is not int or capacity < 0:
        raise InvalidArgument(f"capacity {capacity!r} must be a byte count >= 0")
    return capacity


def batch_item(item: Any, n: int) -> tuple[Any, ...]:
    """A batch item as a tuple of ``n`` values (``(oid, index[, data])``), or InvalidArgument."""
    if type(item) is tuple and len(item) == n:
        return item
    try:
        values = tuple(item)
    except TypeError:
        values = ()
    if len(values) != n:
        raise InvalidArgument(f"a batch item must be a tuple of {n}, not {item!r:.80}")
    return values


def settle_batch(results: list[Any], errors: str) -> list[Any]:
    """Apply a batch's ``errors`` mode: raise the first error, or return errors in place."""
    if errors == "return":
        return results
    if errors != "raise":
        raise InvalidArgument(f"errors must be 'raise' or 'return', not {errors!r}")
    for result in results:
        if isinstance(result, TmemError):
            raise result
    return results


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

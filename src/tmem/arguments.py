"""The checks of every host's call arguments, and the limits they check.

Compiled with the engine (setup.py), so that the engine and the embedded
host call them natively; :mod:`tmem.api` re-exports every name here, and
code outside those layers reads them from there.  Each check returns the
value it accepted or raises :class:`tmem.errors.InvalidArgument`.
"""

from __future__ import annotations

import operator
import uuid as _uuid
from typing import Any, Final

from tmem.errors import InvalidArgument, TmemError

#: A page handle's object id lies in [0, OID_LIMIT): room for a 192-bit file handle.
OID_LIMIT: Final = 1 << 192
#: A page handle's index lies in [0, INDEX_LIMIT).
INDEX_LIMIT: Final = 1 << 32
#: Pool page sizes are powers of two in this range (bytes).
MIN_PAGE_SIZE: Final = 512
MAX_PAGE_SIZE: Final = 65536
DEFAULT_PAGE_SIZE: Final = 4096
#: A client's name is a non-empty string of at most this many characters.
MAX_NAME: Final = 255


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


def check_name(name: Any) -> str:
    """Return ``name`` if it can name a client (a non-empty string of at most
    :data:`MAX_NAME` characters), else raise."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise InvalidArgument(f"client name {name!r} must be a non-empty string of <= {MAX_NAME}")
    return name


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


def settle_batch(results: list[Any], errors: Any) -> list[Any]:
    """Apply a batch's ``errors`` mode: raise the first error, or return errors in place."""
    if errors == "return":
        return results
    if errors != "raise":
        raise InvalidArgument(f"errors must be 'raise' or 'return', not {errors!r}")
    for result in results:
        if isinstance(result, TmemError):
            raise result
    return results

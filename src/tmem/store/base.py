"""The one small interface between the engine and whatever holds page bytes.

A store copies a page in and returns an integer reference, copies it out,
frees it, and says how many bytes of real memory the reference costs.  The
engine never looks inside a reference.  A store may refuse a page (a negative
return from :meth:`PageStore.put`), for instance one that compresses poorly.
"""

from __future__ import annotations

from typing import Any, Final

#: ``put`` returned this: the store refused the page (its own counters say why).
REJECTED: Final = -1


class PageStore:
    """Holds page bytes in memory it owns and accounts for.

    The stores subclass it (not a Protocol): compiled, the engine then calls
    a store's methods through its vtable, where a protocol's were Python
    method calls with boxed arguments (about 1,000 instructions each, four
    or five per put).
    """

    #: Bytes of memory holding page data now (slots in use, with their rounding);
    #: the engine counts the host's usage from it, so shared content counts once.
    used_bytes: int

    def put(self, data: bytes | memoryview, persistent: bool, cid: int) -> int:
        """Copy ``data`` in for client ``cid``; return a reference >= 0, or REJECTED."""
        raise NotImplementedError

    def get(self, ref: int) -> bytes:
        """Return a copy of the page stored under ``ref``."""
        raise NotImplementedError

    def free(self, ref: int) -> None:
        """Release ``ref``; it must not be used again."""
        raise NotImplementedError

    def export(self, ref: int) -> bytes:
        """The page under ``ref`` as the store keeps it, for a tier (:mod:`tmem.store.export`)."""
        raise NotImplementedError

    def adopt(self, blob: bytes, persistent: bool, cid: int) -> int:
        """Store an exported page again; a reference >= 0, or REJECTED."""
        raise NotImplementedError

    def poor(self, ref: int) -> bool:
        """True if ``ref`` is kept raw because it compressed poorly (evicted sooner)."""
        raise NotImplementedError

    def refuse(self, ref: int) -> None:
        """Free ``ref``, just stored, counting it as refused for compressing poorly."""
        raise NotImplementedError

    def charge(self, ref: int) -> int:
        """Bytes of real memory ``ref`` holds (its data plus the allocator's rounding)."""
        raise NotImplementedError

    def configure_client(self, cid: int, compress: Any) -> None:
        """Set how pages of client ``cid`` are stored from now on."""
        raise NotImplementedError

    def forget_client(self, cid: int) -> None:
        """Client ``cid`` left and holds no references any more."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters and sizes of the store (``mem_used_total`` is its resident bytes)."""
        raise NotImplementedError

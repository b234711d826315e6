"""The one small interface between the engine and whatever holds page bytes.

A store copies a page in and returns an integer reference, copies it out,
frees it, and says how many bytes of real memory the reference costs.  The
engine never looks inside a reference.  A store may refuse a page (a negative
return from :meth:`PageStore.put`), for instance one that compresses poorly.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

#: ``put`` returned this: the store refused the page (its own counters say why).
REJECTED: Final = -1


class PageStore(Protocol):
    """Holds page bytes in memory it owns and accounts for."""

    #: Bytes of memory holding page data now (slots in use, with their rounding);
    #: the engine counts the host's usage from it, so shared content counts once.
    used_bytes: int

    def put(self, data: bytes | memoryview, persistent: bool, cid: int) -> int:
        """Copy ``data`` in for client ``cid``; return a reference >= 0, or REJECTED."""
        ...

    def get(self, ref: int) -> bytes:
        """Return a copy of the page stored under ``ref``."""
        ...

    def free(self, ref: int) -> None:
        """Release ``ref``; it must not be used again."""
        ...

    def export(self, ref: int) -> bytes:
        """The page under ``ref`` as the store keeps it, for a tier (:mod:`tmem.store.export`)."""
        ...

    def adopt(self, blob: bytes, persistent: bool, cid: int) -> int:
        """Store an exported page again; a reference >= 0, or REJECTED."""
        ...

    def poor(self, ref: int) -> bool:
        """True if ``ref`` is kept raw because it compressed poorly (evicted sooner)."""
        ...

    def refuse(self, ref: int) -> None:
        """Free ``ref``, just stored, counting it as refused for compressing poorly."""
        ...

    def charge(self, ref: int) -> int:
        """Bytes of real memory ``ref`` holds (its data plus the allocator's rounding)."""
        ...

    def configure_client(self, cid: int, compress: Any) -> None:
        """Set how pages of client ``cid`` are stored from now on."""
        ...

    def forget_client(self, cid: int) -> None:
        """Client ``cid`` left and holds no references any more."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and sizes of the store (``mem_used_total`` is its resident bytes)."""
        ...

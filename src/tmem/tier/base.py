"""The tier interface: a store below the host's RAM store, fed by demotion.

A tier is handed batches of pages that the RAM store already holds in its
own (compressed) form, and says where each one went: a location, an integer
the host keeps in its page table, or None where it refused the page.  It
loads one page at a time, synchronously, and frees pages the host no longer
holds.  The engine's rules stay in the engine: a tier never decides what a
client sees, it only keeps bytes.

Every page a tier holds is tagged with the page's **version**, a number the
engine hands out once per put and never again for the host's life.  A load
names the version it expects; a tier returns bytes only if they were stored
under that very version, so a stale copy (an older put of the same handle, a
page freed and its slot reused) can never come back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tmem.errors import TierError


@dataclass(frozen=True, slots=True)
class Demotion:
    """One page on its way down: what a tier needs to store it and report on it."""

    #: The page's version (unique for the host's life); loads must name it.
    tag: int
    #: The host's own key for the page (its page id); reported back if the tier drops it.
    key: int
    #: The page as the RAM store exported it (:func:`tmem.store.decode_export` reads it).
    payload: bytes
    #: Persistent pages are never dropped by a tier and leave RAM only once safe.
    persistent: bool


class Tier(Protocol):
    """A store below the store: holds exported pages, loads them back by location."""

    #: Short name in statistics and logs (``"ssd"``, ``"redis"``).
    name: str
    #: Bytes of the host's RAM each page held here costs (the tier's own index).
    index_bytes_per_page: int

    def store(self, batch: Sequence[Demotion]) -> list[int | None]:
        """Keep each page of ``batch``; return its location, or None where refused.

        A page with a location is safe in the tier when this returns (for a
        persistent page: as safe as the tier can make it). Never raises for
        a failing device or network: it refuses the pages instead.
        """
        ...

    def load(self, loc: int, tag: int) -> bytes | None:
        """The payload stored at ``loc`` under version ``tag``.

        None if the tier does not hold that version there (it dropped an
        ephemeral page, or lost one).  Raises :class:`TierError` if the tier
        cannot answer in its time bound, or what it read fails its checks.
        """
        ...

    def free(self, pages: Sequence[tuple[int, int]]) -> None:
        """Forget each ``(loc, tag)``; never raises (a lost free only wastes space)."""
        ...

    def dropped(self) -> list[tuple[int, int]]:
        """``(key, tag)`` of ephemeral pages the tier dropped on its own since last asked."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the tier refuses new pages (device failed, cluster unreachable)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Pages and bytes held, bytes written, failures and the tier's own figures."""
        ...

    def close(self) -> None:
        """Release files, connections and whatever the tier holds."""
        ...


class QuickLoading(Protocol):
    """A tier that may also offer a cheaper load for the usual case (the SSD tier's one
    compiled call), which a host then calls first on a get."""

    #: ``quick_load(loc, tag)`` answers as :meth:`Tier.load` does, or False where it
    #: cannot tell (then :meth:`Tier.load` is asked), and may raise OSError or
    #: ValueError (then :meth:`Tier.load` is asked too, and says what failed); None while
    #: the tier has none.
    quick_load: Callable[[int, int], bytes | bool | None] | None


__all__ = ["Demotion", "QuickLoading", "Tier", "TierError"]

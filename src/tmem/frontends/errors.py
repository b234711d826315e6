"""Errors the frontends raise on top of the contract's (all under :class:`tmem.TmemError`)."""

from __future__ import annotations

from collections.abc import Iterable

from tmem.errors import ConnectionLost, InvalidArgument


class EmptySlot(InvalidArgument):
    """A swap slot was loaded that holds no page (never stored, or invalidated)."""

    code = 3


class PagesLost(ConnectionLost):
    """The host went away holding pages that existed nowhere else.

    ``slots`` names every swap slot whose page is gone; loading any of them
    raises this error until the slot is stored again or invalidated.
    """

    code = 5

    def __init__(self, slots: Iterable[int], message: str = "") -> None:
        self.slots: tuple[int, ...] = tuple(sorted(slots))
        shown = ", ".join(map(str, self.slots[:16]))
        more = f" and {len(self.slots) - 16} more" if len(self.slots) > 16 else ""
        text = message or "the tmem host was lost"
        super().__init__(f"{text}; {len(self.slots)} swap page(s) lost: slots {shown}{more}")

"""The self-shrinking policy of Linux's frontswap-selfshrink, as a pure object.

Each interval the driver hands :meth:`SelfShrink.step` the number of pages
frontswap holds in tmem.  While that number grows, nothing happens.  Once it
has not grown for ``inertia`` intervals in a row, the step asks to shrink
frontswap by ``1/hysteresis`` of its pages (to zero if it holds no more than
``hysteresis``), and the count of quiet intervals starts again.  Linux's
defaults: inertia 3, hysteresis 20.
"""

from __future__ import annotations

from typing import Any

from tmem.errors import InvalidArgument

DEFAULT_INERTIA = 3
DEFAULT_HYSTERESIS = 20


def _positive(name: str, value: Any) -> int:
    if type(value) is not int or value < 1:
        raise InvalidArgument(f"{name} must be an integer >= 1, not {value!r}")
    return value


class SelfShrink:
    """When to shrink frontswap, and to how many pages; both knobs changeable at run time."""

    def __init__(
        self, inertia: int = DEFAULT_INERTIA, hysteresis: int = DEFAULT_HYSTERESIS
    ) -> None:
        self.inertia = inertia
        self.hysteresis = hysteresis
        self._last = 0
        self._quiet = self._inertia

    @property
    def inertia(self) -> int:
        """Intervals without growth before a shrink step."""
        return self._inertia

    @inertia.setter
    def inertia(self, value: int) -> None:
        self._inertia = _positive("inertia", value)
        self._quiet = value

    @property
    def hysteresis(self) -> int:
        """Each shrink step takes away 1/hysteresis of the pages."""
        return self._hysteresis

    @hysteresis.setter
    def hysteresis(self, value: int) -> None:
        self._hysteresis = _positive("hysteresis", value)

    def step(self, current: int) -> int | None:
        """One interval with ``current`` pages in tmem; the target to shrink to, or None."""
        last, self._last = self._last, current
        if not current or current > last:
            self._quiet = self._inertia
            return None
        self._quiet -= 1
        if self._quiet > 0:
            return None
        self._quiet = self._inertia
        if current <= self._hysteresis:
            return 0
        return current - current // self._hysteresis

"""How a guest's private page cache balloons toward its working set (Xen's selfballoon).

Every interval the driver hands :meth:`BalloonLaw.step` what the cache did
(:class:`~tmem.control.signals.CacheSignal`); the step returns the number of
private pages to keep.  The law, with Xen's names for its knobs
(:class:`BalloonTunables`):

* The **goal** is the working set: the largest number of distinct pages the
  cache used in any of the last ``window`` intervals, at least ``min_usable``.
  Pages outside it are cold: given back, they live in tmem (the host) until
  they are read again.
* If tmem answered at least ``refault_high`` of the interval's reads
  (refaults: pages the cache gave away and needed again), the goal is at
  least the current size plus those refaults: the cache is too small.
* The size moves toward the goal by ``1/uphysteresis`` of the gap when
  growing (Xen's default 1: at once) and ``1/downhysteresis`` when shrinking
  (Xen's default 8), never above ``max_pages`` (the guest's memory).
* A ``ceiling`` in the signal (the guest's memory cgroup has no room) caps
  the size at once, without hysteresis: that memory is not there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmem.control.signals import CacheSignal
from tmem.control.tunables import check_count, check_fraction, check_seconds, with_settings


@dataclass(frozen=True)
class BalloonTunables:
    """The self-balloon's knobs, named as Xen's ``/sys/devices/system/xen_memory`` ones."""

    #: Seconds between steps (read by the driver; Xen's ``selfballoon_interval``).
    interval: float = 1.0
    #: Shrink by 1/downhysteresis of the gap to the goal per step.
    downhysteresis: int = 8
    #: Grow by 1/uphysteresis of the gap per step.
    uphysteresis: int = 1
    #: Never shrink below this many pages (Xen's ``selfballoon_min_usable_mb``, in pages).
    min_usable: int = 16
    #: The working set is the largest of the last ``window`` intervals.
    window: int = 4
    #: Refaults (tmem hits) per read at or above which the cache grows.
    refault_high: float = 0.02

    def __post_init__(self) -> None:
        check_seconds("interval", self.interval)
        check_count("downhysteresis", self.downhysteresis)
        check_count("uphysteresis", self.uphysteresis)
        check_count("min_usable", self.min_usable)
        check_count("window", self.window)
        check_fraction("refault_high", self.refault_high)

    def with_values(self, values: Mapping[str, Any]) -> BalloonTunables:
        """A copy with ``values`` (``downhysteresis=4`` ...) checked and applied."""
        return with_settings(self, values)


class BalloonLaw:
    """The self-balloon's control law for a cache of at most ``max_pages`` pages."""

    def __init__(self, max_pages: int, tunables: BalloonTunables | None = None) -> None:
        self.tunables = tunables or BalloonTunables()
        self.max_pages = check_count("max_pages", max_pages)
        self._recent: deque[int] = deque(maxlen=self.tunables.window)

    def goal(self, signal: CacheSignal) -> int:
        """The working set this interval's signal asks for (before hysteresis)."""
        t = self.tunables
        self._recent.append(signal.touched)
        goal = max(t.min_usable, max(self._recent))
        if signal.reads and signal.refaults >= t.refault_high * signal.reads:
            goal = max(goal, signal.pages + signal.refaults)
        return min(goal, self.max_pages)

    def step(self, signal: CacheSignal) -> int:
        """The number of private pages to keep for the next interval."""
        t = self.tunables
        current, goal = signal.pages, self.goal(signal)
        if goal > current:
            size = current + -(-(goal - current) // t.uphysteresis)
        else:
            size = current - (current - goal) // t.downhysteresis
        if signal.ceiling is not None:
            size = min(size, signal.ceiling)
        return max(1, min(size, self.max_pages))

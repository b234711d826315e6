"""How an auto-sized host chooses its capacity: give back fast, grow slowly.

Every interval the driver hands :meth:`HostLaw.step` the machine's memory
(:class:`~tmem.control.signals.MemorySignal`), the host's capacity and the
bytes it holds; the step returns the capacity to set.  The law (all
constants are :class:`HostTunables`):

* **Short** -- ``MemAvailable`` below ``min_free`` of the machine's memory, or
  the memory pressure (PSI "some") of the last interval above
  ``pressure_limit``.  The host gives back at once the larger of the deficit
  (``min_free * total - available``) and ``backoff`` of what it holds: the new
  capacity is ``held - cut`` (``held`` = the smaller of capacity and usage),
  never below ``floor``.  Setting it evicts ephemeral pages at once and
  refuses puts while persistent pages alone exceed it; persistent pages are
  never dropped.  This is Senpai's fast back-off and the reverse of Xen
  selfballoon's fast inflation.
* **Plentiful** -- ``MemAvailable`` above ``grow_free`` of the machine, no
  pressure for more than ``grow_after`` intervals in a row, and the host
  using at least ``grow_usage`` of its capacity (there is demand).  The
  capacity grows by ``grow_share`` of the surplus above ``grow_free``, at most
  ``grow_limit`` of the machine per interval, up to ``ceiling``: slow
  probing, as Senpai's, and Xen's slow deflation (``downhysteresis``).
* Otherwise (between ``min_free`` and ``grow_free``: the dead band) the
  capacity holds.

With no pressure signal (PSI missing) only ``MemAvailable`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmem.control.signals import MemorySignal
from tmem.control.tunables import (
    check_count,
    check_fraction,
    check_seconds,
    with_settings,
)
from tmem.errors import InvalidArgument

#: Without a ceiling, the host may grow to this share of the machine's memory.
DEFAULT_CEILING_SHARE = 0.5


@dataclass(frozen=True)
class HostTunables:
    """Every constant of the host's law (see the module's docstring).

    Fractions are of the machine's total memory unless said otherwise.
    """

    #: Seconds between steps (read by the driver, not the law).
    interval: float = 1.0
    #: The host never sizes itself below this many bytes.
    floor: int = 16 << 20
    #: ...nor above this many (None: half the machine's memory).
    ceiling: int | None = None
    #: MemAvailable below this share of the machine: short, give back now.
    min_free: float = 0.10
    #: MemAvailable above this share: plentiful, the host may grow.
    grow_free: float = 0.20
    #: PSI "some" share of an interval above which the machine is short.
    pressure_limit: float = 0.01
    #: When short, give back at least this share of what the host holds.
    backoff: float = 0.25
    #: When growing, take this share of the surplus above ``grow_free``...
    grow_share: float = 0.125
    #: ...but at most this share of the machine per interval.
    grow_limit: float = 0.02
    #: Calm intervals (neither short nor pressured) needed before growing.
    grow_after: int = 3
    #: Grow only while the host uses at least this share of its capacity.
    grow_usage: float = 0.9

    def __post_init__(self) -> None:
        check_seconds("interval", self.interval)
        check_count("floor", self.floor, low=0)
        if self.ceiling is not None:
            check_count("ceiling", self.ceiling, low=0)
            if self.ceiling < self.floor:
                raise InvalidArgument(f"ceiling {self.ceiling} is below the floor {self.floor}")
        for name in ("min_free", "grow_free", "pressure_limit", "backoff"):
            check_fraction(name, getattr(self, name))
        for name in ("grow_share", "grow_limit", "grow_usage"):
            check_fraction(name, getattr(self, name))
        if self.grow_free < self.min_free:
            raise InvalidArgument(
                f"grow_free {self.grow_free} must not be below min_free {self.min_free}"
            )
        check_count("grow_after", self.grow_after, low=0)

    def with_values(self, values: Mapping[str, Any]) -> HostTunables:
        """A copy with ``values`` (``grow-after=3``, ``floor=64M`` ...) checked and applied."""
        return with_settings(self, values, sizes=("floor", "ceiling"))

    def ceiling_for(self, total: int) -> int:
        """The ceiling in bytes on a machine of ``total`` bytes (never below the floor)."""
        ceiling = self.ceiling if self.ceiling is not None else int(total * DEFAULT_CEILING_SHARE)
        return max(ceiling, self.floor)


@dataclass(frozen=True)
class Step:
    """One step's decision: the capacity to set, why, and the bytes asked back.

    ``reason`` is ``"short"`` (MemAvailable), ``"pressure"`` (PSI), ``"grow"``
    or ``"hold"``; ``wanted`` is the deficit below ``min_free`` (0 unless
    short), the memory the machine asked for.
    """

    capacity: int
    reason: str
    wanted: int = 0


class HostLaw:
    """The host's control law; it keeps only the count of calm intervals."""

    def __init__(self, tunables: HostTunables | None = None) -> None:
        self.tunables = tunables or HostTunables()
        self.calm = 0

    def step(self, signal: MemorySignal, capacity: int, used: int) -> Step:
        """The capacity for the next interval, given the machine now and the host's use."""
        t = self.tunables
        total, available = signal.total, signal.available
        ceiling = t.ceiling_for(total)
        floor = t.floor
        deficit = max(0, int(total * t.min_free) - available)
        pressured = signal.pressure is not None and signal.pressure > t.pressure_limit
        if deficit or pressured:
            self.calm = 0
            held = min(capacity, used)
            cut = max(deficit, int(held * t.backoff))
            target = max(floor, min(ceiling, held - cut))
            return Step(target, "short" if deficit else "pressure", deficit)
        self.calm += 1
        bounded = min(max(capacity, floor), ceiling)
        surplus = available - int(total * t.grow_free)
        if (
            surplus > 0
            and self.calm > t.grow_after
            and used >= capacity * t.grow_usage
            and bounded < ceiling
        ):
            grow = min(int(surplus * t.grow_share), int(total * t.grow_limit))
            if grow > 0:
                return Step(min(ceiling, bounded + grow), "grow")
        return Step(bounded, "hold")

"""``tmem serve --capacity auto``: the daemon sizes its host from the machine's memory.

An :class:`AutoSizer` steps the host's control law
(:class:`tmem.control.HostLaw`) once per ``interval`` from the daemon's event
loop: it samples the machine (:class:`tmem.control.procfs.MachineMemory`, or
any :class:`tmem.control.MemorySource`), reads the host's usage, and calls
``host.set_capacity``, which evicts ephemeral pages at once and refuses puts
while persistent pages exceed the new capacity.  Each change is logged with
the signal that caused it.

Settings: ``capacity = "auto"``, ``capacity-floor``, ``capacity-ceiling`` and
the law's tunables (``--autosize KEY=VALUE``, or an ``[autosize]`` table in the
TOML file); see docs/autosize.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tmem.control import HostLaw, HostTunables, MemorySource, Step
from tmem.control.procfs import MachineMemory
from tmem.errors import InvalidArgument
from tmem.host import Host
from tmem.units import format_size

log = logging.getLogger("tmem.daemon.autosize")

#: The settings (file and option spellings) that configure auto-sizing.
AUTOSIZE_KEYS = ("capacity-floor", "capacity-ceiling", "autosize")


def autosize_settings(
    current: HostTunables | None, values: dict[str, Any]
) -> tuple[HostTunables | None, dict[str, Any]]:
    """Take the auto-sizing settings out of ``values``; return the tunables and the rest.

    ``capacity = "auto"`` turns auto-sizing on; ``capacity-floor`` and
    ``capacity-ceiling`` bound it; ``autosize`` is a table (or ``KEY=VALUE``
    strings) of :class:`~tmem.control.HostTunables`.  A fixed capacity turns it off.
    """
    rest = {}
    tunables = current
    changes: dict[str, Any] = {}
    auto = None
    for key, value in values.items():
        name = key.replace("_", "-")
        if name == "capacity" and isinstance(value, str) and value.strip().lower() == "auto":
            auto = True
        elif name == "capacity" and value is not None:
            auto = False
            rest[key] = value
        elif name in ("capacity-floor", "capacity-ceiling"):
            if value is not None:
                changes[name.removeprefix("capacity-")] = value
        elif name == "autosize":
            changes.update(_pairs(value))
        else:
            rest[key] = value
    if auto is False:
        return None, rest
    if auto or (tunables is not None and changes):
        tunables = (tunables or HostTunables()).with_values(changes)
    elif changes:
        raise InvalidArgument("capacity-floor, capacity-ceiling and autosize need capacity=auto")
    return tunables, rest


def _pairs(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    out = {}
    for item in items:
        for part in str(item).split(","):
            key, sep, setting = part.partition("=")
            if not sep or not key.strip():
                raise InvalidArgument(f"autosize setting {part!r} is not KEY=VALUE")
            out[key.strip()] = setting.strip()
    return out


class AutoSizer:
    """Steps ``host``'s capacity from ``source`` by ``law``, every ``law.tunables.interval``."""

    def __init__(
        self,
        host: Host,
        law: HostLaw,
        source: MemorySource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.law = law
        self.source: MemorySource = source if source is not None else MachineMemory()
        self.clock = clock
        self.interval = law.tunables.interval
        self.next_due = clock()
        self.steps = 0
        self.last: Step | None = None
        log.info("auto-sizing every %gs from %s", self.interval, self.source.describe())

    def timeout(self, other: float) -> float:
        """How long the event loop may sleep: ``other`` (-1: forever) or until the next step."""
        left = max(0.0, self.next_due - self.clock())
        return left if other < 0 else min(other, left)

    def tick(self) -> None:
        """Step if the interval is up; a failing step is logged, never raised."""
        now = self.clock()
        if now < self.next_due:
            return
        self.next_due = max(self.next_due + self.interval, now)
        try:
            self.step()
        except Exception:  # the daemon keeps serving at its last capacity
            log.exception("auto-size step failed")

    def step(self) -> Step:
        """Sample, decide and apply one step; return the decision."""
        signal = self.source.sample()
        before = self.host.stats()
        capacity, used = before["capacity"], before["bytes"]
        decision = self.law.step(signal, capacity, used)
        self.steps += 1
        self.last = decision
        if decision.capacity != capacity:
            self.host.set_capacity(decision.capacity)
        level = logging.DEBUG if decision.reason == "hold" else logging.INFO
        if log.isEnabledFor(level):
            after = self.host.stats()["bytes"]
            pressure = "-" if signal.pressure is None else f"{signal.pressure:.4f}"
            log.log(
                level,
                "autosize %s: available=%d total=%d pressure=%s wanted=%d "
                "capacity=%d->%d held=%d->%d (%s -> %s)",
                decision.reason,
                signal.available,
                signal.total,
                pressure,
                decision.wanted,
                capacity,
                decision.capacity,
                used,
                after,
                format_size(capacity),
                format_size(decision.capacity),
            )
        return decision


def make_autosizer(host: Host, tunables: HostTunables) -> AutoSizer:
    """The daemon's auto-sizer: ``tunables`` over the machine's real signals."""
    return AutoSizer(host, HostLaw(tunables))

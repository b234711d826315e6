"""What the memory loops are told each interval, and where it comes from.

A loop's driver asks a :class:`MemorySource` for one :class:`MemorySignal`
per interval; the real source reads ``/proc`` and cgroups
(:class:`tmem.control.procfs.MachineMemory`), tests hand in any sequence
(:class:`ScriptedMemory`).  A guest's balloon is told what its page cache did
in the interval (:class:`CacheSignal`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MemorySignal:
    """The memory of the machine (or of the cgroup a process is confined to), now.

    ``total`` and ``available`` are bytes (``MemTotal`` and ``MemAvailable``, or
    a memory cgroup's limit and what it leaves); ``pressure`` is the share of
    the last interval in which some task stalled waiting for memory (pressure
    stall information, "some"), from 0 to 1, or None where it is not known.
    """

    total: int
    available: int
    pressure: float | None = None


class MemorySource(Protocol):
    """Anything that can say how the machine's memory stands, once per interval."""

    def sample(self) -> MemorySignal:
        """The signal for the interval that just ended."""
        ...

    def describe(self) -> str:
        """Which signals this source reads, in words (for the log)."""
        ...


class ScriptedMemory:
    """A :class:`MemorySource` that plays back a given sequence, then repeats its last signal."""

    def __init__(self, signals: Iterable[MemorySignal]) -> None:
        self._signals: Iterator[MemorySignal] = iter(signals)
        self._last: MemorySignal | None = None

    def sample(self) -> MemorySignal:
        """The next signal of the sequence (the last one again once it is spent)."""
        self._last = next(self._signals, self._last)
        if self._last is None:
            raise ValueError("a ScriptedMemory needs at least one signal")
        return self._last

    def describe(self) -> str:
        """Says that the signals are scripted."""
        return "scripted signals"


@dataclass(frozen=True)
class CacheSignal:
    """What a guest's private page cache did during one interval.

    ``pages`` is its size now; ``reads`` the page reads asked of it;
    ``touched`` the distinct private pages those reads used (hits and fills);
    ``refaults`` the reads that tmem answered (pages the cache had given away
    and needed again).  ``ceiling`` is the most pages the guest may hold now
    (from its memory cgroup, say), or None when nothing outside limits it.
    """

    pages: int
    reads: int
    touched: int
    refaults: int
    ceiling: int | None = None

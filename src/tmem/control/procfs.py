"""The real signals: ``/proc/meminfo``, pressure stall information and memory cgroups.

Parsers take the files' text, so that tests feed them sample files; the
readers around them open the real files.  :class:`MachineMemory` is the
:class:`~tmem.control.signals.MemorySource` a daemon uses: ``MemAvailable``,
narrowed to what its memory cgroup (v1 or v2, and every ancestor) leaves when
it is confined to one, and the share of each interval some task stalled on
memory, from the growth of PSI's ``some total``.  Where PSI is missing
(``/proc/pressure`` absent, or ``psi=0``) the pressure is None and the
source says so in :meth:`MachineMemory.describe`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tmem.control.signals import MemorySignal

#: A cgroup v1 limit at or above this is "no limit" (the kernel writes 2**63 rounded to pages).
_V1_UNLIMITED = 1 << 62


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as a dict of bytes (``kB`` fields converted, counts as they are)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        out[name.strip()] = value * 1024 if parts[1:] == ["kB"] else value
    return out


def available_bytes(info: dict[str, int]) -> int:
    """``MemAvailable``; on kernels before 3.14, ``MemFree + Cached`` stands in for it."""
    if "MemAvailable" in info:
        return info["MemAvailable"]
    return info.get("MemFree", 0) + info.get("Cached", 0)


@dataclass(frozen=True)
class Pressure:
    """One pressure file (``/proc/pressure/memory`` or a cgroup's ``memory.pressure``).

    ``*_avg10`` are percentages over 10 s; ``*_total`` microseconds stalled
    since boot.  ``full`` is None where the file has no such line.
    """

    some_avg10: float
    some_total: int
    full_avg10: float | None = None
    full_total: int | None = None


def parse_pressure(text: str) -> Pressure:
    """Parse a PSI file; ValueError if it has no ``some`` line."""
    lines: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        lines[kind] = dict(field.split("=", 1) for field in fields if "=" in field)
    if "some" not in lines:
        raise ValueError("no 'some' line in the pressure file")
    some, full = lines["some"], lines.get("full")
    return Pressure(
        float(some["avg10"]),
        int(some["total"]),
        float(full["avg10"]) if full else None,
        int(full["total"]) if full else None,
    )


@dataclass(frozen=True)
class CgroupMemory:
    """A memory cgroup's limit (None: unlimited), usage and reclaimable file cache, in bytes."""

    limit: int | None
    usage: int
    inactive_file: int

    @property
    def headroom(self) -> int | None:
        """What the cgroup leaves: limit less usage, counting inactive file pages as free."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.usage + self.inactive_file)


def parse_cgroup_memory(version: int, limit: str, usage: str, stat: str) -> CgroupMemory:
    """A cgroup's memory from the text of its files.

    v1: ``memory.limit_in_bytes``, ``memory.usage_in_bytes``, ``memory.stat``;
    v2: ``memory.max``, ``memory.current``, ``memory.stat``.
    """
    stats = {}
    for line in stat.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stats[key] = int(value)
    text = limit.strip()
    if version == 2:
        cap = None if text == "max" else int(text)
        inactive = stats.get("inactive_file", 0)
    else:
        cap = int(text)
        cap = None if cap >= _V1_UNLIMITED else cap
        inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    return CgroupMemory(cap, int(usage.strip()), inactive)


def read_cgroup_memory(directory: str | Path) -> CgroupMemory | None:
    """The memory of the cgroup at ``directory`` (v1 or v2), or None if it has no memory files."""
    path = Path(directory)
    for version, names in (
        (2, ("memory.max", "memory.current")),
        (1, ("memory.limit_in_bytes", "memory.usage_in_bytes")),
    ):
        if (path / names[0]).exists():
            try:
                return parse_cgroup_memory(
                    version,
                    (path / names[0]).read_text(),
                    (path / names[1]).read_text(),
                    (path / "memory.stat").read_text(),
                )
            except (OSError, ValueError):
                return None
    return None


def memory_cgroup_dir(proc_cgroup: str, mountinfo: str) -> Path | None:
    """The directory of a process's memory cgroup, from its ``/proc/PID/cgroup`` and
    ``/proc/PID/mountinfo`` texts; v1's memory hierarchy first, then v2; None if neither
    is mounted."""
    v1_path = v2_path = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            v1_path = parts[2]
        elif parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mount, fstype, options = fields[3], fields[4], tail[0], tail[2].split(",")
        if fstype == "cgroup" and "memory" in options and v1_path is not None:
            return _join(mount, root, v1_path)
        if fstype == "cgroup2" and v2_path is not None and v1_path is None:
            return _join(mount, root, v2_path)
    return None


def _join(mount: str, root: str, path: str) -> Path:
    """The directory of cgroup ``path`` under a mount of cgroup ``root`` at ``mount``."""
    if root != "/" and path.startswith(root):
        path = path[len(root) :]
    return Path(mount) / path.lstrip("/")


def cgroup_chain(directory: Path) -> list[Path]:
    """``directory`` and each ancestor that is still a memory cgroup (has memory files)."""
    chain = []
    path = directory
    while read_cgroup_memory(path) is not None:
        chain.append(path)
        if path.parent == path:
            break
        path = path.parent
    return chain


class MachineMemory:
    """The machine's memory as a daemon sees it: a :class:`~tmem.control.signals.MemorySource`.

    ``cgroup`` is ``"auto"`` (this process's memory cgroup and its ancestors, if
    any has a limit), None (the whole machine) or a cgroup directory.
    ``pressure`` is a PSI file: the machine's by default, or a cgroup's
    ``memory.pressure``.
    """

    def __init__(
        self,
        meminfo: str = "/proc/meminfo",
        pressure: str | None = "/proc/pressure/memory",
        cgroup: str | None = "auto",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meminfo = meminfo
        self.pressure_file = pressure
        self.clock = clock
        self.cgroups = self._cgroups(cgroup)
        self.psi_error: str | None = None
        self._last: tuple[float, int] | None = None
        self._read_pressure()  # the first reading is the baseline (and says if PSI works)

    @staticmethod
    def _cgroups(cgroup: str | None) -> list[Path]:
        if cgroup is None:
            return []
        if cgroup == "auto":
            found = own_memory_cgroup()
            if found is None:
                return []
            limited = []
            for path in cgroup_chain(found):
                memory = read_cgroup_memory(path)
                if memory is not None and memory.limit is not None:
                    limited.append(path)
            return limited
        return [Path(cgroup)]

    def _read_pressure(self) -> float | None:
        """The stalled share of the time since the last reading (first: the 10 s average)."""
        if self.pressure_file is None:
            self.psi_error = "no pressure file given"
            return None
        try:
            with open(self.pressure_file) as fh:
                reading = parse_pressure(fh.read())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            self.psi_error = f"{self.pressure_file}: {reason}"
            return None
        self.psi_error = None
        now = self.clock()
        last, self._last = self._last, (now, reading.some_total)
        if last is None or now <= last[0]:
            return reading.some_avg10 / 100
        stalled = (reading.some_total - last[1]) / 1e6
        return min(1.0, max(0.0, stalled / (now - last[0])))

    def sample(self) -> MemorySignal:
        """MemTotal and MemAvailable (narrowed by the cgroups) and the last interval's pressure."""
        with open(self.meminfo) as fh:
            info = parse_meminfo(fh.read())
        total, available = info["MemTotal"], available_bytes(info)
        for path in self.cgroups:
            memory = read_cgroup_memory(path)
            if memory is None or memory.limit is None:
                continue
            total = min(total, memory.limit)
            available = min(available, memory.headroom or 0)
        return MemorySignal(total, available, self._read_pressure())

    def describe(self) -> str:
        """Which signals are read, and whether PSI is used."""
        where = "MemAvailable of " + self.meminfo
        if self.cgroups:
            where += ", limited by memory cgroup " + ", ".join(map(str, self.cgroups))
        if self.psi_error is None:
            return f"{where}; pressure from {self.pressure_file}"
        return f"{where}; PSI not available ({self.psi_error}): sizing from MemAvailable alone"


def page_cache_headroom(directory: str | Path) -> int | None:
    """Bytes the memory cgroup at ``directory`` leaves (None: unlimited or not a cgroup)."""
    memory = read_cgroup_memory(directory)
    return None if memory is None else memory.headroom


def own_memory_cgroup() -> Path | None:
    """This process's memory cgroup directory, or None."""
    try:
        return memory_cgroup_dir(
            Path(f"/proc/{os.getpid()}/cgroup").read_text(),
            Path(f"/proc/{os.getpid()}/mountinfo").read_text(),
        )
    except OSError:
        return None

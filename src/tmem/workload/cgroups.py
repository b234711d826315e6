"""Memory cgroups made for an experiment: create, limit, fill with processes, remove.

:class:`MemoryCgroup` works on cgroup v1's memory hierarchy or on cgroup v2
where its memory controller is enabled, whichever this machine offers (v1
first).  New groups go below this process's own memory cgroup.  Where no
group can be made (no hierarchy, no permission) :func:`MemoryCgroup.create`
raises :class:`CgroupUnavailable` with the reason, so a test can skip on it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tmem.control.procfs import memory_cgroup_dir, parse_pressure, read_cgroup_memory


class CgroupUnavailable(Exception):
    """No memory cgroup can be made here; the message says why."""


def _own_directory() -> tuple[Path, int]:
    try:
        found = memory_cgroup_dir(
            Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text()
        )
    except OSError as exc:
        raise CgroupUnavailable(f"cannot read this process's cgroups: {exc}") from None
    if found is None:
        raise CgroupUnavailable("no memory cgroup hierarchy (v1 memory or v2) is mounted")
    if (found / "memory.limit_in_bytes").exists():
        return found, 1
    if "memory" not in (found / "cgroup.controllers").read_text().split():
        raise CgroupUnavailable(f"cgroup v2 at {found} has no memory controller")
    return found, 2


class MemoryCgroup:
    """One memory cgroup directory (v1 or v2)."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls, name: str, parent: MemoryCgroup | None = None) -> MemoryCgroup:
        """Make cgroup ``name`` below ``parent`` (default: this process's own memory cgroup)."""
        base, version = (parent.path, parent.version) if parent else _own_directory()
        path = base / name
        try:
            if version == 2:
                control = base / "cgroup.subtree_control"
                if "memory" not in control.read_text().split():
                    control.write_text("+memory")
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create memory cgroup {path}: {exc}") from None
        return cls(path, version)

    def _file(self, v1: str, v2: str) -> Path:
        return self.path / (v1 if self.version == 1 else v2)

    @property
    def limit(self) -> int | None:
        """The memory limit in bytes (None: unlimited)."""
        memory = read_cgroup_memory(self.path)
        return memory.limit if memory else None

    def set_limit(self, limit: int | None) -> None:
        """Set the limit; OSError (EBUSY) where the kernel cannot reclaim down to it."""
        text = ("-1" if self.version == 1 else "max") if limit is None else str(limit)
        self._file("memory.limit_in_bytes", "memory.max").write_text(text)

    def squeeze(self, target: int, timeout: float, slack: int = 1 << 20) -> bool:
        """Lower the limit toward ``target``, each time to ``slack`` above the usage, as
        the members give memory back (the kernel refuses a limit below what it cannot
        reclaim); True once the limit is ``target``, False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            limit = max(target, self.usage + slack)
            current = self.limit
            if current is None or limit < current:
                with contextlib.suppress(OSError):  # EBUSY: the usage grew meanwhile
                    self.set_limit(limit)
            if self.limit == target:
                return True
            time.sleep(0.02)
        return False

    @property
    def usage(self) -> int:
        """Bytes charged to the group now."""
        return int(self._file("memory.usage_in_bytes", "memory.current").read_text())

    @property
    def headroom(self) -> int | None:
        """What the limit leaves (inactive file pages counted as free); None if unlimited."""
        memory = read_cgroup_memory(self.path)
        return memory.headroom if memory else None

    def oom_kills(self) -> int:
        """Processes the OOM killer killed in this group so far."""
        text = self._file("memory.oom_control", "memory.events").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pressure(self) -> float | None:
        """The group's PSI ``some avg10`` (percent), where the kernel keeps one (v2)."""
        with contextlib.suppress(OSError, ValueError):
            return parse_pressure((self.path / "memory.pressure").read_text()).some_avg10
        return None

    def add(self, pid: int) -> None:
        """Move process ``pid`` into the group."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def procs(self) -> list[int]:
        """The processes in the group now."""
        with contextlib.suppress(OSError):
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        return []

    def remove(self, timeout: float = 10.0) -> None:
        """Remove the group once it is empty (its processes should have ended)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)


def command_in(group: MemoryCgroup, argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the process joins ``group`` before it runs."""
    script = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    return ["sh", "-c", script, str(group.path), *argv]

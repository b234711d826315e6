"""Property: file operations through ``tmem mount`` act as the same operations on a plain directory.

Each example runs a sequence of operations twice: through a real mount (a
2-page private cache in front of a small host that evicts) and on a plain
directory; some happen behind the mount's back, on its source, and on the
plain directory alike.  Every result -- bytes read, or the errno -- and the
final files must be the same.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frontends.mounting import Mount, mounted, needs_fuse

pytestmark = needs_fuse

PS = 4096
NAMES = ("a", "b", "c")

names = st.sampled_from(NAMES)
offsets = st.integers(0, 5 * PS)
payloads = st.binary(min_size=1, max_size=2 * PS + 3)
ops = st.one_of(
    st.tuples(st.just("read"), names, offsets, st.integers(1, 3 * PS)),
    st.tuples(st.just("write"), names, offsets, payloads),
    st.tuples(st.just("append"), names, payloads),
    st.tuples(st.just("truncate"), names, offsets),
    st.tuples(st.just("create"), names, payloads),
    st.tuples(st.just("unlink"), names),
    st.tuples(st.just("rename"), names, names),
    st.tuples(st.just("outside_write"), names, offsets, payloads),
    st.tuples(st.just("outside_truncate"), names, offsets),
    st.tuples(st.just("outside_replace"), names, payloads),
)


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    root = tmp_path_factory.mktemp("model")
    (root / "src").mkdir()
    with mounted(root / "src", root / "mnt", "--embedded", "48K", "--cache-size", "8K") as m:
        yield m


def errno_of(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except OSError as exc:
        return ("errno", exc.errno)


class Side:
    """One directory the operations run in: the mount, or the plain reference."""

    def __init__(self, root: Path, behind: Path) -> None:
        self.root = root  # where the program's operations go
        self.behind = behind  # where changes behind the mount's back go
        self.stamp = 10**9

    def read(self, name: str, offset: int, size: int) -> Any:
        fd = os.open(self.root / name, os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def write(self, name: str, offset: int, data: bytes) -> Any:
        fd = os.open(self.root / name, os.O_WRONLY)
        try:
            return os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def append(self, name: str, data: bytes) -> Any:
        fd = os.open(self.root / name, os.O_WRONLY | os.O_APPEND)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)

    def truncate(self, name: str, size: int) -> None:
        os.truncate(self.root / name, size)

    def create(self, name: str, data: bytes) -> None:
        (self.root / name).write_bytes(data)

    def unlink(self, name: str) -> None:
        os.unlink(self.root / name)

    def rename(self, name: str, dst: str) -> None:
        os.rename(self.root / name, self.root / dst)

    def _touch_behind(self, name: str) -> None:
        # An unused mtime, so the change is seen whatever the timestamp granularity.
        self.stamp += 1
        os.utime(self.behind / name, ns=(self.stamp, self.stamp))

    def outside_write(self, name: str, offset: int, data: bytes) -> None:
        fd = os.open(self.behind / name, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        self._touch_behind(name)

    def outside_truncate(self, name: str, size: int) -> None:
        os.truncate(self.behind / name, size)
        self._touch_behind(name)

    def outside_replace(self, name: str, data: bytes) -> None:
        (self.behind / "tmp").write_bytes(data)
        os.replace(self.behind / "tmp", self.behind / name)
        self._touch_behind(name)


_examples = itertools.count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
    HealthCheck.function_scoped_fixture], derandomize=True,
)  # fmt: skip
@given(st.lists(ops, max_size=25))
def test_operations_through_the_mount_match_a_plain_directory(
    mount: Mount, tmp_path_factory: pytest.TempPathFactory, steps: list[Any]
) -> None:
    n = next(_examples)
    (mount.source / f"e{n}").mkdir()
    plain = tmp_path_factory.mktemp("plain")
    through = Side(mount.path / f"e{n}", mount.source / f"e{n}")
    reference = Side(plain, plain)
    for kind, *args in steps:
        got = errno_of(lambda k=kind, a=args: getattr(through, k)(*a))
        want = errno_of(lambda k=kind, a=args: getattr(reference, k)(*a))
        assert got == want, (kind, args)
    for name in NAMES:
        assert errno_of(lambda x=name: (through.root / x).read_bytes()) == errno_of(
            lambda x=name: (plain / x).read_bytes()
        )

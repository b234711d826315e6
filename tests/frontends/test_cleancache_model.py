"""Property: after any sequence of file operations every byte read through cleancache is true.

Operations go through a cache (reads, writes, truncations, renames, unlinks,
creations) or behind its back (writes, truncations, replacement by a new
file), while a small host evicts and takes capacity away.  A dict of expected
file contents is the reference model.  The second property runs two caches,
as two processes would, sharing one pool of the host.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmem
from tmem.frontends import CleanCache

PS = 512
NAMES = ("a", "b", "c")

names = st.sampled_from(NAMES)
offsets = st.integers(0, 6 * PS)
payloads = st.binary(min_size=1, max_size=3 * PS)
ops = st.one_of(
    st.tuples(st.just("read"), names, offsets, st.integers(1, 4 * PS)),
    st.tuples(st.just("write"), names, offsets, payloads),
    st.tuples(st.just("truncate"), names, offsets),
    st.tuples(st.just("create"), names, payloads),
    st.tuples(st.just("unlink"), names),
    st.tuples(st.just("rename"), names, names),
    st.tuples(st.just("outside_write"), names, offsets, payloads),
    st.tuples(st.just("outside_truncate"), names, offsets),
    st.tuples(st.just("outside_replace"), names, payloads),
    st.tuples(st.just("capacity"), st.integers(0, 40)),
)


class World:
    """The cache under test, the real directory, and the model of what the files hold."""

    def __init__(self, root: Path, caches: list[CleanCache], host: tmem.Host) -> None:
        self.root, self.caches, self.host = root, caches, host
        self.cache = caches[0]
        self.files: dict[str, bytearray] = {}
        self.stamp = 10**9

    def path(self, name: str) -> Path:
        return self.root / name

    def touch_behind(self, name: str) -> None:
        """An unused mtime, so the change is seen whatever the timestamp granularity."""
        self.stamp += 1
        os.utime(self.path(name), ns=(self.stamp, self.stamp))

    def apply(self, op: tuple[Any, ...], who: int = 0) -> None:
        self.cache = self.caches[who % len(self.caches)]
        kind, name, *args = op
        if kind == "capacity":
            self.host.set_capacity(max(1, name) * (PS + 256))
            return
        if kind in ("create", "outside_replace") or name in self.files:
            getattr(self, kind)(name, *args)

    def read(self, name: str, offset: int, length: int) -> None:
        with self.cache.open(self.path(name)) as f:
            f.seek(offset)
            got = f.read(length)
        assert got == bytes(self.files[name][offset : offset + length])

    def write(self, name: str, offset: int, data: bytes) -> None:
        with self.cache.open(self.path(name), "r+b") as f:
            f.seek(offset)
            f.write(data)
        self._model_write(name, offset, data)

    def _model_write(self, name: str, offset: int, data: bytes) -> None:
        model = self.files[name]
        if offset > len(model):
            model.extend(bytes(offset - len(model)))
        model[offset : offset + len(data)] = data

    def truncate(self, name: str, size: int) -> None:
        with self.cache.open(self.path(name), "r+b") as f:
            f.truncate(size)
        self._model_truncate(name, size)

    def _model_truncate(self, name: str, size: int) -> None:
        model = self.files[name]
        del model[size:]
        model.extend(bytes(size - len(model)))

    def create(self, name: str, data: bytes) -> None:
        with self.cache.open(self.path(name), "wb") as f:
            f.write(data)
        self.files[name] = bytearray(data)

    def unlink(self, name: str) -> None:
        self.cache.unlink(self.path(name))
        del self.files[name]

    def rename(self, name: str, dst: str) -> None:
        self.cache.rename(self.path(name), self.path(dst))
        self.files[dst] = self.files.pop(name)

    def outside_write(self, name: str, offset: int, data: bytes) -> None:
        with open(self.path(name), "r+b") as f:
            f.seek(offset)
            f.write(data)
        self.touch_behind(name)
        self._model_write(name, offset, data)

    def outside_truncate(self, name: str, size: int) -> None:
        os.truncate(self.path(name), size)
        self.touch_behind(name)
        self._model_truncate(name, size)

    def outside_replace(self, name: str, data: bytes) -> None:
        tmp = self.root / "tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.path(name))
        self.touch_behind(name)
        self.files[name] = bytearray(data)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(st.lists(ops, max_size=40))
def test_every_read_through_cleancache_equals_the_files_bytes(steps: list[Any]) -> None:
    host = tmem.Host(24 * (PS + 256), compress=None, dedup=None)
    with tempfile.TemporaryDirectory() as root, CleanCache(host.connect("c"), 3, PS) as cache:
        cache.enable(root)
        world = World(Path(root), [cache], host)
        for step in steps:
            world.apply(step)
        for name, data in world.files.items():
            assert world.path(name).read_bytes() == data
            world.read(name, 0, len(data) + 1)
        stats = cache.stats()
        assert stats["reads"] == stats["private_hits"] + stats["succ_gets"] + stats["disk_reads"]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(st.lists(st.tuples(ops, st.integers(0, 1)), max_size=40))
def test_two_caches_sharing_a_pool_never_read_stale_bytes(steps: list[Any]) -> None:
    host = tmem.Host(24 * (PS + 256), compress=None, dedup=None)
    fs_uuid = uuid.uuid4()
    for name in ("p1", "p2"):
        host.authorize_shared(name, fs_uuid)
    with (
        tempfile.TemporaryDirectory() as root,
        CleanCache(host.connect("p1"), 3, PS) as one,
        CleanCache(host.connect("p2"), 3, PS) as two,
    ):
        assert one.enable(root, shared_uuid=fs_uuid) and two.enable(root, shared_uuid=fs_uuid)
        world = World(Path(root), [one, two], host)
        for step, who in steps:
            world.apply(step, who)
        for who in (0, 1):
            world.cache = world.caches[who]
            for name, data in world.files.items():
                world.read(name, 0, len(data) + 1)

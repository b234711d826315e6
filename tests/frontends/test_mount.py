"""``tmem mount``: real FUSE mounts read by real programs, with a real daemon behind them."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tmem
from tests.frontends.mounting import Mount, mounted, needs_fuse, run, serving

pytestmark = needs_fuse

PS = 4096


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple]:
    with serving(tmp_path) as served:
        yield served


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def mnt(src: Path, tmp_path: Path, daemon: tuple) -> Iterator[Mount]:
    """A mount of ``src`` with a 64 KiB private cache in front of the daemon."""
    with mounted(src, tmp_path / "mnt", "--host", daemon[1], "--cache-size", "64K") as m:
        yield m


def host_stats(daemon: tuple) -> dict:
    with tmem.admin(daemon[1], timeout=10) as admin:
        return admin.stats()


def test_cat_dd_sha256sum_and_cp_read_the_source_bytes_and_tmem_serves_rereads(
    src: Path, mnt: Mount, daemon: tuple, tmp_path: Path
) -> None:
    data = blob(3 * 2**20 + 1234)  # 3 MiB and a bit: 48 times the private cache
    (src / "data.bin").write_bytes(data)
    f = mnt.path / "data.bin"
    assert run("cat", str(f)).stdout == data
    assert run("sha256sum", str(f)).stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    # unaligned small reads at an odd offset
    out = run("dd", f"if={f}", "bs=7", "skip=100003", "count=1001", "status=none").stdout
    assert out == data[700021 : 700021 + 7007]
    run("cp", str(f), str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == data
    stats = host_stats(daemon)
    assert stats["succ_gets"] > 0, "re-reads were not served from the host"
    assert stats["succ_puts"] > 0


def test_many_threads_and_processes_read_true_bytes(src: Path, mnt: Mount) -> None:
    data = blob(2 * 2**20, seed=1)
    (src / "d").write_bytes(data)
    errors: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        fd = os.open(mnt.path / "d", os.O_RDONLY)
        try:
            for _ in range(40):
                off, size = rng.randrange(len(data)), rng.randrange(1, 70000)
                if os.pread(fd, size, off) != data[off : off + size]:
                    errors.append(f"bad bytes at {off}+{size}")
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    procs = [
        subprocess.Popen(["sha256sum", str(mnt.path / "d")], stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    want = hashlib.sha256(data).hexdigest()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert out.split()[0].decode() == want
    assert errors == []


def test_writes_of_every_size_and_alignment_reach_the_source(src: Path, mnt: Mount) -> None:
    ref = bytearray(blob(5 * PS + 17, seed=2))
    (src / "w").write_bytes(ref)
    rng = random.Random(3)
    fd = os.open(mnt.path / "w", os.O_RDWR)
    try:
        for _ in range(60):
            off, size = rng.randrange(7 * PS), rng.choice([1, 3, 511, PS - 1, PS, PS + 1, 3 * PS])
            piece = rng.randbytes(size)
            os.pwrite(fd, piece, off)
            ref[len(ref) : off] = bytes(max(0, off - len(ref)))
            ref[off : off + size] = piece
            roff, rsize = rng.randrange(len(ref)), rng.randrange(1, 2 * PS)
            assert os.pread(fd, rsize, roff) == bytes(ref[roff : roff + rsize])
        os.fsync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    assert (src / "w").read_bytes() == bytes(ref)
    with open(mnt.path / "w", "ab") as f:  # appends land at the end
        f.write(b"tail")
    assert (src / "w").read_bytes() == bytes(ref) + b"tail"


def test_changes_behind_the_mounts_back_are_seen_by_a_reader_that_keeps_the_file_open(
    src: Path, mnt: Mount
) -> None:
    old, new = blob(64 * PS, seed=4), blob(64 * PS, seed=5)
    (src / "f").write_bytes(old)
    with open(mnt.path / "f", "rb", buffering=0) as f:
        assert f.read() == old  # now in the private cache and tmem
        f.seek(0)
        assert f.read() == old
        time.sleep(0.01)
        (src / "f").write_bytes(new)  # same size, new bytes, behind the mount
        f.seek(0)
        assert f.read() == new
        with open(src / "f", "r+b") as g:
            g.truncate(10 * PS + 5)
        f.seek(0)
        assert f.read() == new[: 10 * PS + 5]


def test_coherency_through_the_mount_and_behind_it(src: Path, mnt: Mount) -> None:
    m = mnt.path
    a, b, c = blob(20 * PS, 6), blob(20 * PS, 7), blob(20 * PS, 8)
    (m / "a").write_bytes(a)
    assert run("cat", str(m / "a")).stdout == a
    # rename over a cached file: the replaced file's pages never come back
    (m / "b").write_bytes(b)
    assert run("cat", str(m / "b")).stdout == b
    os.rename(m / "a", m / "b")
    assert run("cat", str(m / "b")).stdout == a
    # unlink and re-create under the same name (maybe the same inode)
    os.unlink(m / "b")
    (m / "b").write_bytes(c)
    assert run("cat", str(m / "b")).stdout == c
    # truncate through the mount, then extend: the cut part reads as zeros
    os.truncate(m / "b", 3 * PS + 1)
    os.truncate(m / "b", 8 * PS)
    assert (m / "b").read_bytes() == c[: 3 * PS + 1] + bytes(5 * PS - 1)
    # replaced behind the mount's back by a new file (new inode)
    run("cat", str(m / "b"))
    (src / "tmp").write_bytes(a)
    os.rename(src / "tmp", src / "b")
    assert run("cat", str(m / "b")).stdout == a
    assert run("sha256sum", str(m / "b")).stdout.split()[0].decode() == (
        hashlib.sha256(a).hexdigest()
    )


def test_mmap_private_by_default_and_shared_with_kernel_cache(
    src: Path, tmp_path: Path, daemon: tuple
) -> None:
    data = blob(10 * PS + 3, seed=9)
    (src / "m").write_bytes(data)
    with mounted(src, tmp_path / "m1", "--host", daemon[1]) as m, open(m.path / "m", "rb") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mm:
            assert mm[:] == data
        with pytest.raises(OSError) as info:
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        assert info.value.errno == errno.ENODEV
    with (
        mounted(src, tmp_path / "m2", "--host", daemon[1], "--kernel-cache") as m,
        open(m.path / "m", "r+b") as f,
    ):
        with mmap.mmap(f.fileno(), 0) as mm:
            assert mm[:] == data
            mm[5:9] = b"MMAP"
            mm.flush()
        assert (src / "m").read_bytes()[:12] == data[:5] + b"MMAP" + data[9:12]


class CacheRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class CacheStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("nr_cache", "nr_dirty", "nr_writeback",
                                               "nr_evicted", "nr_recently_evicted")]  # fmt: skip


def cached_pages(fd: int) -> int:
    """Pages of the open file ``fd`` in the kernel's page cache (cachestat(2), Linux 6.5)."""
    libc = ctypes.CDLL(None, use_errno=True)
    out = CacheStat()
    if libc.syscall(451, fd, ctypes.byref(CacheRange(0, 0)), ctypes.byref(out), 0) != 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            pytest.skip("this kernel has no cachestat(2)")
        raise OSError(err, os.strerror(err))
    return out.nr_cache


@pytest.mark.parametrize("kernel_cache", [False, True])
def test_the_kernel_keeps_no_second_copy_of_what_the_mount_read(
    src: Path, tmp_path: Path, daemon: tuple, kernel_cache: bool
) -> None:
    data = blob(4 * 2**20, seed=11)
    (src / "k").write_bytes(data)
    os.sync()  # dirty pages cannot be dropped; clean ones must be
    extra = ["--kernel-cache"] if kernel_cache else []
    with mounted(src, tmp_path / "kc", "--host", daemon[1], *extra) as m:
        fd = os.open(m.path / "k", os.O_RDONLY)
        try:
            assert b"".join(iter(lambda: os.read(fd, 1 << 20), b"")) == data
            mounted_pages = cached_pages(fd)
        finally:
            os.close(fd)
        sfd = os.open(src / "k", os.O_RDONLY)
        try:
            source_pages = cached_pages(sfd)
        finally:
            os.close(sfd)
    assert source_pages < len(data) // PS // 10, "the source's page cache kept a copy"
    if kernel_cache:
        assert mounted_pages > len(data) // PS // 2  # the kernel is the front cache then
    else:
        assert mounted_pages == 0, "the kernel cached pages of a direct_io mount"


def test_sparse_files_larger_than_4_gib(src: Path, mnt: Mount) -> None:
    far = 5 * 2**30 - 3 * PS + 7  # past 4 GiB, unaligned
    with open(mnt.path / "big", "wb") as f:
        f.truncate(5 * 2**30)
        f.seek(far)
        f.write(b"beyond four gibibytes")
    assert os.stat(mnt.path / "big").st_size == 5 * 2**30
    assert os.stat(src / "big").st_blocks < 64  # still sparse in the source
    out = run("dd", f"if={mnt.path / 'big'}", "bs=4096", f"skip={far // PS}", "count=2",
              "status=none").stdout  # fmt: skip
    assert out[far % PS : far % PS + 21] == b"beyond four gibibytes"
    assert out[: far % PS] == bytes(far % PS)  # the hole reads as zeros
    with open(mnt.path / "big", "rb") as f:
        f.seek(2**32 - 10)
        assert f.read(20) == bytes(20)


def test_errors_of_the_source_keep_their_errno(src: Path, mnt: Mount) -> None:
    m = mnt.path
    (src / "file").write_bytes(b"x")
    (src / "dir").mkdir()
    (src / "dir" / "inner").write_bytes(b"y")
    cases = [
        (lambda: os.open(m / "missing", os.O_RDONLY), errno.ENOENT),
        (lambda: os.open(m / "file" / "x", os.O_RDONLY), errno.ENOTDIR),
        (lambda: os.mkdir(m / "dir"), errno.EEXIST),
        (lambda: os.rmdir(m / "dir"), errno.ENOTEMPTY),
        (lambda: os.open(m / "file", os.O_CREAT | os.O_EXCL | os.O_WRONLY), errno.EEXIST),
        (lambda: os.unlink(m / "dir"), errno.EISDIR),
        (lambda: os.open(m / ("n" * 300), os.O_CREAT | os.O_WRONLY), errno.ENAMETOOLONG),
    ]
    for call, want in cases:
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == want, (call, info.value)
    r = subprocess.run(["cat", str(m / "missing")], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"No such file" in r.stderr


def test_read_only_mount_refuses_changes(src: Path, tmp_path: Path, daemon: tuple) -> None:
    (src / "r").write_bytes(b"read me")
    with mounted(src, tmp_path / "ro", "--host", daemon[1], "--read-only") as m:
        assert run("cat", str(m.path / "r")).stdout == b"read me"
        for call in (
            lambda: os.open(m.path / "r", os.O_RDWR),
            lambda: os.open(m.path / "new", os.O_CREAT | os.O_WRONLY),
            lambda: os.unlink(m.path / "r"),
            lambda: os.mkdir(m.path / "d"),
        ):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.EROFS
    assert (src / "r").read_bytes() == b"read me"


@pytest.mark.parametrize("how", ["fusermount3", "sigterm"])
def test_unmount_and_sigterm_end_the_mount_cleanly(src: Path, tmp_path: Path, how: str) -> None:
    (src / "x").write_bytes(b"x" * 10)
    with mounted(src, tmp_path / "u", "--embedded", "16M") as m:
        assert (m.path / "x").read_bytes() == b"x" * 10
        if how == "sigterm":
            m.proc.send_signal(signal.SIGTERM)
        else:
            run("fusermount3", "-u", str(m.path))
        assert m.proc.wait(60) == 0, m.log()
        assert not os.path.ismount(m.path)


def test_the_daemon_killed_under_the_mount_costs_hits_never_a_wrong_byte(
    src: Path, tmp_path: Path
) -> None:
    data = blob(2 * 2**20, seed=10)
    (src / "d").write_bytes(data)
    with (
        serving(tmp_path) as (server, address),
        mounted(src, tmp_path / "k", "--host", address, "--cache-size", "64K") as m,
    ):
        want = hashlib.sha256(data).hexdigest()
        assert run("sha256sum", str(m.path / "d")).stdout.split()[0].decode() == want
        assert run("sha256sum", str(m.path / "d")).stdout.split()[0].decode() == want
        server.kill()
        server.wait(10)
        for _ in range(2):
            assert run("sha256sum", str(m.path / "d")).stdout.split()[0].decode() == want
        assert run("cat", str(m.path / "d")).stdout == data
        assert "tmem host lost" in m.log()
        assert m.proc.poll() is None  # still serving


def test_bad_options_and_arguments_are_named(tmp_path: Path) -> None:
    s, m = tmp_path / "s", tmp_path / "m"
    cases = [
        (["mount", str(tmp_path / "nope"), str(m)], "SOURCE"),
        (["mount", str(s), str(tmp_path / "nope")], "MOUNTPOINT"),
        (["mount", str(tmp_path), str(m)], "MOUNTPOINT must not"),
        (["mount", str(s), str(m), "--cache-size", "lots"], "--cache-size"),
        (["mount", str(s), str(m), "--shared-uuid", "x"], "--shared-uuid"),
        (["mount", str(s), str(m), "--host", "unix:/nonexistent"], "--host"),
    ]
    s.mkdir()
    m.mkdir()
    for args, word in cases:
        r = subprocess.run(
            [sys.executable, "-m", "tmem.cli", *args], capture_output=True, text=True, timeout=30
        )
        assert r.returncode != 0
        assert word in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_two_mounts_share_one_pool_when_the_administrator_authorizes_it(
    src: Path, tmp_path: Path, daemon: tuple
) -> None:
    data = blob(1 << 20, seed=12)
    (src / "shared.bin").write_bytes(data)
    fs = uuid.uuid4()
    with tmem.admin(daemon[1], timeout=10) as admin:
        for name in ("node1", "node2"):
            admin.authorize_shared(name, fs)
    opts = ("--host", daemon[1], "--cache-size", "64K", "--shared-uuid", str(fs))
    with mounted(src, tmp_path / "n1", *opts, "--name", "node1") as one:
        assert run("cat", str(one.path / "shared.bin")).stdout == data  # fills the shared pool
        with mounted(src, tmp_path / "n2", *opts, "--name", "node2") as two:
            assert run("cat", str(two.path / "shared.bin")).stdout == data
            clients = host_stats(daemon)["clients"]
            assert clients["node2"]["succ_gets"] > 200  # node1's pages, found by node2
        with mounted(src, tmp_path / "n3", *opts, "--name", "stranger") as three:
            assert run("cat", str(three.path / "shared.bin")).stdout == data
            assert "did not authorize" in three.log()
            assert host_stats(daemon)["clients"]["stranger"]["succ_gets"] == 0

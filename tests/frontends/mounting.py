"""Real ``tmem mount`` and ``tmem serve`` processes for the tests, always cleaned up.

Every wait is bounded; a mount is lazily unmounted (``fusermount3 -u -z``) and
its process killed whatever the test did, so a failing test never leaves a
mount or a hung process behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tmem


def fuse_missing() -> str | None:
    """Why real mounts cannot run here, or None when they can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy or libfuse3 is missing: {exc}"
    return None


needs_fuse = pytest.mark.skipif(fuse_missing() is not None, reason=str(fuse_missing()))


def unmount(mountpoint: Path | str) -> None:
    """Lazily unmount ``mountpoint`` if it is mounted (bounded)."""
    subprocess.run(
        ["fusermount3", "-u", "-z", str(mountpoint)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=20,
        check=False,
    )


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate ``proc`` and wait for it; kill it if it does not go in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Mount:
    """A running ``tmem mount`` process; ``log()`` reads what it wrote."""

    def __init__(self, proc: subprocess.Popen, source: Path, path: Path, log: Path) -> None:
        self.proc = proc
        self.source = source
        self.path = path
        self.log_path = log

    def log(self) -> str:
        """Everything the mount process wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def mounted(source: Path, mountpoint: Path, *options: str, timeout: float = 20) -> Iterator[Mount]:
    """Run ``tmem mount source mountpoint *options`` until the block ends."""
    mountpoint.mkdir(exist_ok=True)
    log = mountpoint.parent / f"{mountpoint.name}.log"
    cmd = [sys.executable, "-m", "tmem.cli", "mount", str(source), str(mountpoint), *options]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    mount = Mount(proc, source, mountpoint, log)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None:
                raise AssertionError(f"tmem mount exited with {proc.returncode}: {mount.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"tmem mount did not mount in {timeout}s: {mount.log()}")
            time.sleep(0.05)
        yield mount
    finally:
        unmount(mountpoint)
        stop(proc)


@contextlib.contextmanager
def serving(directory: Path, capacity: str = "64M", timeout: float = 20) -> Iterator[tuple]:
    """Run ``tmem serve`` on a socket in ``directory``; yields (process, address)."""
    sock = directory / "tmem.sock"
    cmd = [
        sys.executable, "-m", "tmem.cli", "serve", "--socket", str(sock),
        "--capacity", capacity, "--compress", "none",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = "unix:" + str(sock)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"tmem serve exited with {proc.returncode}")
            if sock.exists():
                with contextlib.suppress(tmem.ConnectionLost):
                    tmem.admin(address, timeout=5).close()
                    break
            if time.monotonic() > deadline:
                raise AssertionError("tmem serve did not start")
            time.sleep(0.05)
        yield proc, address
    finally:
        stop(proc)


def run(*cmd: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess:
    """Run a command (bounded), capturing its output; raise if it fails."""
    return subprocess.run(cmd, capture_output=True, timeout=timeout, check=True, **kwargs)  # type: ignore[call-overload]

"""A real ``tmem serve`` for the benchmarks that measure through a daemon."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tmem


def start(
    sock: str | Path,
    *options: str,
    wrap: Callable[[list[str]], list[str]] = list,
    **popen: Any,
) -> subprocess.Popen:
    """Start ``tmem serve`` on the Unix socket ``sock`` with ``options``; return its process
    once it answers an admin hello (at most 30 s, else SystemExit).

    ``wrap`` turns the command into the one run (to start it in a cgroup, say);
    ``popen`` goes to :class:`subprocess.Popen` (``stderr``, ``preexec_fn``, ...).
    """
    sock = Path(sock)
    argv = [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(sock), *options]
    proc = subprocess.Popen(wrap(argv), **popen)
    deadline = time.monotonic() + 30
    while True:
        if sock.exists():
            with contextlib.suppress(tmem.ConnectionLost):
                tmem.admin("unix:" + str(sock), timeout=5).close()
                return proc
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise SystemExit(f"tmem serve did not start (exit status {proc.returncode})")
        time.sleep(0.05)


@contextlib.contextmanager
def daemon(directory: Path, *options: str) -> Iterator[str]:
    """Run ``tmem serve`` on a socket in ``directory`` with ``options``; yield its address.

    Waits (at most 30 s) until it answers an admin hello; stops it on exit.
    """
    sock = directory / "tmem.sock"
    proc = start(sock, *options)
    try:
        yield "unix:" + str(sock)
    finally:
        proc.terminate()
        proc.wait(20)

"""A real ``tmem serve`` for the benchmarks that measure through a daemon."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import tmem


@contextlib.contextmanager
def daemon(directory: Path, *options: str) -> Iterator[str]:
    """Run ``tmem serve`` on a socket in ``directory`` with ``options``; yield its address.

    Waits (at most 30 s) until it answers an admin hello; stops it on exit.
    """
    sock = directory / "tmem.sock"
    proc = subprocess.Popen([sys.executable, "-m", "tmem.cli", "serve", "--socket", str(sock),
                             *options])  # fmt: skip
    address = "unix:" + str(sock)
    try:
        deadline = time.monotonic() + 30
        while True:
            if sock.exists():
                with contextlib.suppress(tmem.ConnectionLost):
                    tmem.admin(address, timeout=5).close()
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("tmem serve did not start")
            time.sleep(0.05)
        yield address
    finally:
        proc.terminate()
        proc.wait(20)

"""Daemons for the tests: in a thread of the test process, or a real ``tmem serve``."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tmem
from tmem.daemon.config import Config
from tmem.daemon.server import Server, run_in_thread


@contextlib.contextmanager
def running(config: Config, host: tmem.Host | None = None) -> Iterator[Server]:
    """A daemon serving ``config`` in a thread; stopped on exit."""
    server = Server(config, host=host)
    thread = run_in_thread(server)
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        assert not thread.is_alive(), "the daemon did not stop"


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start thread daemons on sockets under ``tmp_path``; all are stopped afterwards."""
    stack = contextlib.ExitStack()
    numbers = itertools.count()

    def start(host: tmem.Host | None = None, **settings: Any) -> Server:
        settings.setdefault("socket", str(tmp_path / f"d{next(numbers)}.sock"))
        settings.setdefault("compress", None)
        return stack.enter_context(running(Config().with_values(settings), host))

    with stack:
        yield start


@pytest.fixture
def daemon(start_daemon: Callable[..., Server]) -> Server:
    """One daemon of 64 MiB, raw pages."""
    return start_daemon(capacity=64 << 20)


def wait_for_socket(
    path: str,
    proc: subprocess.Popen,
    timeout: float = 60.0,  # a loaded machine starts a daemon in seconds, not one
    probe: Callable[[str], Any] = tmem.admin,
) -> None:
    """Wait until ``tmem serve`` answers ``probe("unix:" + path)`` (or fail if it exited);
    the default probe is an administrator's hello."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tmem serve exited with {proc.returncode}"
        if os.path.exists(path):
            with contextlib.suppress(tmem.ConnectionLost):
                probe("unix:" + path).close()
                return
        time.sleep(0.05)
    raise AssertionError("tmem serve did not start")


@contextlib.contextmanager
def serve_processes(
    tmp_path: Path, prefix: str, *common: str, probe: Callable[[str], Any] = tmem.admin
) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """A starter of ``tmem serve`` processes (with ``common`` options first) on sockets
    ``tmp_path/PREFIXn.sock``; each is killed on exit if still running."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        path = str(tmp_path / f"{prefix}{len(procs)}.sock")
        cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", path, *common, *args]
        procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))
        wait_for_socket(path, procs[-1], probe=probe)
        return procs[-1], "unix:" + path

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Start ``tmem serve`` processes; each is killed afterwards if still running."""
    with serve_processes(tmp_path, "p") as start:
        yield start

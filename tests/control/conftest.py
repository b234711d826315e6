"""Real ``tmem serve`` daemons, and the ``tmem`` command run as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tmem
from tests.daemon.conftest import serve_process  # noqa: F401  (a fixture)


def tmem_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``tmem ARGS`` through its real entry point; output as text."""
    env = dict(os.environ, COLUMNS="200")  # tables unwrapped
    return subprocess.run(
        [sys.executable, "-m", "tmem.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def tmem_json(*args: str) -> Any:
    """Run a ``tmem ... --json`` command that must succeed; its document."""
    run = tmem_command(*args, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture
def foreign_daemon(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """``tmem serve`` whose administrators are another user: we are a mere client to it."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        path = str(tmp_path / f"f{len(procs)}.sock")
        cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", path,
               "--admin-uids", "4242", *args]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "tmem serve exited"
            try:
                tmem.connect("unix:" + path, name="probe").close()
                return proc, path
            except tmem.ConnectionLost:
                assert time.monotonic() < deadline, "tmem serve did not start"
                time.sleep(0.05)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()

"""Real ``tmem serve`` daemons, and the ``tmem`` command run as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tmem
from tests.daemon.conftest import serve_process, serve_processes  # noqa: F401  (a fixture)


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
    """``tmem serve`` whose administrators are another user: we are a mere client to it.

    Each start returns the process and its socket's path."""

    def probe(address: str) -> tmem.RemoteClient:
        return tmem.connect(address, name="probe")

    with serve_processes(tmp_path, "f", "--admin-uids", "4242", probe=probe) as start:

        def start_foreign(*args: str) -> tuple[subprocess.Popen, str]:
            proc, address = start(*args)
            return proc, address.removeprefix("unix:")

        yield start_foreign

"""The systemd unit and its readiness protocol, with a real ``tmem serve``."""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.control.conftest import tmem_command
from tmem.daemon.config import load

CONTRIB = Path(__file__).parents[2] / "contrib"


def test_the_daemon_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(30)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(tmp_path / "s.sock"),
         "--state-dir", str(tmp_path / "state")],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ready = listener.recv(4096).decode()
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        assert (tmp_path / "s.sock").exists()  # ready means listening
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096) == b"STOPPING=1"
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait(10)
        listener.close()


def test_the_unit_runs_tmem_serve_with_options_it_has_and_a_config_that_loads():
    unit = (CONTRIB / "tmem.service").read_text()
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    assert words[1] == "serve"
    options = [w for w in words if w.startswith("--")]
    usage = tmem_command("serve", "--help").stdout
    assert options and all(option in usage for option in options)
    config = load(str(CONTRIB / "tmem.toml"))
    assert config.capacity == 1 << 30 and config.admin_uids == frozenset({0})

"""The socket path: the daemon replaces only a dead socket, refuses anything else
there, and on shutdown removes only the socket it made itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import tmem

from .conftest import wait_for_socket


def serve(path: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", path, "--capacity", "1M"]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


def test_a_file_that_is_not_a_socket_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    run = subprocess.run(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "not a socket" in run.stderr
    assert path.read_text() == "precious"


def test_shutdown_leaves_a_file_that_replaced_its_socket(serve_process, tmp_path):
    proc, address = serve_process("--capacity", "1M")
    path = address.removeprefix("unix:")
    os.unlink(path)
    with open(path, "w") as fh:
        fh.write("precious")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    with open(path) as fh:
        assert fh.read() == "precious"


def test_shutdown_leaves_the_live_socket_of_a_second_daemon(serve_process, tmp_path):
    first, address = serve_process("--capacity", "1M")
    path = address.removeprefix("unix:")
    os.unlink(path)  # someone removed it, and a second daemon started in its place
    second = serve(path)
    try:
        wait_for_socket(path, second)
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        assert os.path.exists(path)
        tmem.admin(address).close()  # the second one still answers there
    finally:
        second.terminate()
        assert second.wait(60) == 0
        second.stderr.close()
    assert not os.path.exists(path)  # and the second one removed its own

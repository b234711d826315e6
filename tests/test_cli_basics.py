"""The ``tmem`` command as a user meets it: ``python -m tmem``, ``-h``, Ctrl-C, the version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import click
from click.testing import CliRunner

import tmem
from tmem.cli import main


def tmem_command(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tmem", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The words of every command under ``group`` (groups included)."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))


def test_python_dash_m_tmem_and_dash_h_print_the_help():
    for args in (["-h"], ["--help"], ["serve", "-h"]):
        out = tmem_command(*args)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("Usage: ")


def test_every_command_takes_dash_h():
    commands = list(every_command(main))
    assert ("bench", "workload") in commands and ("serve",) in commands
    for words in commands:
        out = CliRunner().invoke(main, [*words, "-h"], prog_name="tmem")
        assert out.exit_code == 0, (words, out.output)
        assert out.output.startswith(f"Usage: tmem {' '.join(words)} "), words


def test_the_version_is_the_packages_one():
    from importlib.metadata import version

    assert version("tmem") == tmem.__version__
    build = "compiled" if tmem.compiled() else "pure Python"
    assert tmem_command("--version").stdout.strip() == f"tmem, version {tmem.__version__} ({build})"


def test_ctrl_c_stops_a_command_with_status_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmem", "bench", "workload", "--scenario", "cleancache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("tmem-workload-*")):  # its guests are running
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err

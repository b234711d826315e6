"""Every code block of the README and docs/ runs as written, so the docs cannot drift.

The blocks of one file run in order, from an empty temporary directory:
``python`` blocks in one namespace (as one session would), ``sh`` blocks with
``bash -euo pipefail`` and the ``tmem`` command on the PATH, ``toml`` blocks
are parsed.  Whatever a shell block leaves running in the background
(``tmem serve &``) is stopped at the end.  Blocks without a language
(diagrams, output) are text.

A block that cannot run here says so, with its reason, on the line just
before it::

    <!-- no-run: the set-up commands; .ci/run runs them on a fresh clone -->

and a file none of whose blocks can run (the benchmarks) says so once::

    <!-- no-run-file: every block is a benchmark that runs for minutes -->

Their shell commands are still checked to name real ``tmem`` commands and
``bench/`` scripts.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

from tests.frontends.mounting import fuse_missing

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^(?:<!-- no-run: (?P<why>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```",
                   re.M | re.S)  # fmt: skip
DOCS = sorted(
    str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
)
#: Seconds one shell block may take.
SHELL_TIMEOUT = 120


FILE_MARK = re.compile(r"^<!-- no-run-file: (?P<why>[^\n]*?) -->$", re.M)


def blocks(doc: str) -> list[tuple[str, str, str | None, str]]:
    """``(language, code, reason not to run or None, where)`` of every fenced block."""
    text = (ROOT / doc).read_text()
    whole = FILE_MARK.search(text)
    return [
        (
            m["lang"],
            m["code"],
            whole["why"] if whole else m["why"],
            f"{doc}:{text.count(chr(10), 0, m.start('lang')) + 1}",
        )
        for m in BLOCK.finditer(text)
    ]


def _shell(code: str, where: str, cwd: Path, groups: list[int]) -> None:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    # A file, not a pipe: background jobs keep it open after the block ends.
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its background jobs are stopped with its group
        )
        groups.append(proc.pid)
        try:
            proc.wait(timeout=SHELL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{where} did not finish in {SHELL_TIMEOUT} s") from None
        err.seek(0)
        assert proc.returncode == 0, f"{where} failed ({proc.returncode}): {err.read()[-2000:]}"


def _stop(groups: list[int]) -> None:
    """Stop what the shell blocks left running, and wait until it is gone."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    for group in groups:
        for _ in range(100):
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


@pytest.mark.parametrize("doc", DOCS)
def test_every_code_block_runs_as_written(
    doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    groups: list[int] = []
    try:
        for language, code, why, where in blocks(doc):
            if why is not None:
                continue  # checked by the test below
            if language == "python":
                exec(compile(code, where, "exec"), namespace)  # noqa: S102
            elif language == "sh":
                if "tmem mount" in code and fuse_missing():
                    pytest.skip(f"{where}: no FUSE here (the mount tests skip too)")
                _shell(code, where, tmp_path, groups)
            elif language == "toml":
                tomllib.loads(code)
            else:
                assert language == "", f"{where}: a {language!r} block: run it or mark it"
    finally:
        _stop(groups)
        for value in namespace.values():  # what a python block left open
            if hasattr(value, "close") and not isinstance(value, type):
                with contextlib.suppress(Exception):
                    value.close()


@pytest.mark.parametrize("doc", DOCS)
def test_blocks_that_do_not_run_give_a_reason_and_name_real_commands(doc: str) -> None:
    for language, code, why, where in blocks(doc):
        if why is None:
            continue
        assert why.strip(), f"{where}: no-run without a reason"
        if language != "sh":
            continue
        for command in code.splitlines():
            command = command.split("#")[0].strip()
            if command.startswith("python bench/"):
                script = command.split()[1]
                assert (ROOT / script).is_file(), f"{where}: no {script}"
            elif command.startswith("tmem "):
                words = [w for w in command.split()[1:3] if not w.startswith("-")]
                out = subprocess.run(
                    [sys.executable, "-m", "tmem", *words, "--help"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert out.returncode == 0, f"{where}: {command}: {out.stderr}"

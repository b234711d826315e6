"""The traces and the page corpus ship inside the package, so a plain install runs the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tmem.workload.traces import BUILTIN_TRACES

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_traces_and_the_corpus(tmp_path):
    # A compiler that fails: the build falls back to the pure-Python package
    # (quickly: mypyc would take minutes), which must hold everything.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        env={**os.environ, "CC": "/bin/false"},
    )  # fmt: skip
    (wheel,) = tmp_path.glob("tmem-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in BUILTIN_TRACES.values():
        assert f"tmem/workload/data/traces/{name}" in names
    assert "tmem/workload/data/traces/README.md" in names
    assert {"tmem/workload/data/corpus.xz", "tmem/workload/data/corpus.json"} <= names
    assert {"tmem/__init__.py", "tmem/engine/core.py", "tmem/store/ram.py"} <= names
    assert not [name for name in names if name.endswith(".so")]  # no compiler, no extension

"""The compiled build runs where it was built, and ``TMEM_PURE=1`` runs the sources instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tmem
from tmem.loader import PURE_ENV, WITNESS, pure_requested

#: Set by CI: "1" where the compiled build must run, "0" where pure Python must.
EXPECT_ENV = "TMEM_EXPECT_COMPILED"

PROBE = """
import sys, tmem, tmem.host, tmem.daemon.dispatch, tmem.frontends.cleancache, tmem.tier.fastload
print(tmem.compiled())
for name, module in sorted(sys.modules.items()):
    if name == "tmem" or name.startswith("tmem."):
        print(name, getattr(module, "__file__", None))
"""


def _probe(pure: bool) -> tuple[bool, dict[str, str]]:
    env = dict(os.environ)
    env.pop(PURE_ENV, None)
    if pure:
        env[PURE_ENV] = "1"
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    files = dict(line.split(" ", 1) for line in out[1:] if line)
    return out[0] == "True", files


def _built_here() -> bool:
    """Whether a compiled module of the witness lies beside its source."""
    source = Path(tmem.__file__).parent.joinpath(*WITNESS.split(".")[1:]).with_suffix(".py")
    return any(source.parent.glob(source.stem + ".*.so"))


def test_the_build_in_use_is_the_one_expected():
    expected = os.environ.get(EXPECT_ENV)
    if expected is not None:  # CI says which build this run must test
        assert tmem.compiled() == (expected == "1"), f"{EXPECT_ENV}={expected}"
    assert tmem.compiled() == (_built_here() and not pure_requested())


def test_without_tmem_pure_the_compiled_modules_load_where_they_were_built():
    compiled, files = _probe(pure=False)
    assert compiled == _built_here()
    if compiled:
        for name in ("tmem.engine.core", "tmem.store.ram", "tmem.store.compressed",
                     "tmem.arguments", "tmem.host", "tmem.host_transfer"):  # fmt: skip
            assert files[name].endswith(".so"), (name, files[name])


def test_tmem_pure_runs_every_tmem_module_from_its_source():
    compiled, files = _probe(pure=True)
    assert not compiled
    assert "tmem.engine.core" in files and "tmem.daemon.dispatch" in files
    for name, path in files.items():
        if name == "tmem.tier._fastload":  # written in C, it has no source
            continue
        assert path.endswith(".py"), (name, path)

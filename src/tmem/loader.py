"""Which build of tmem runs: the modules mypyc compiled, or their ``.py`` sources.

``pip install`` compiles the hot modules where it can (setup.py); a compiled
module wins over its source.  With ``TMEM_PURE=1`` in the environment,
:func:`use_sources` (called by ``tmem/__init__.py``, which is never compiled)
puts a finder first on ``sys.meta_path`` that loads every tmem submodule that
has a ``.py`` file from that file, so the same installation runs pure Python.
Extensions written in C by hand (``tmem.tier._fastload``) have no source and
still load.  This module is never compiled either.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: The environment variable that asks for the pure-Python build.
PURE_ENV = "TMEM_PURE"
#: A module mypyc compiles whenever it compiles anything (setup.py).
WITNESS = "tmem.engine.core"


class SourceFinder(importlib.abc.MetaPathFinder):
    """Finds ``tmem.*`` modules by their ``.py`` files only."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("tmem.") or path is None:
            return None
        loaders = [(importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)]
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, *loaders).find_spec(fullname)
            if spec is not None and spec.loader is not None:
                return spec
        return None  # no source (a C extension, or no such module): the usual finders


def pure_requested() -> bool:
    """Whether ``TMEM_PURE=1`` asks for the ``.py`` sources."""
    return os.environ.get(PURE_ENV, "") == "1"


def use_sources() -> None:
    """Load tmem's submodules from their sources from now on, if ``TMEM_PURE=1``."""
    if pure_requested() and not any(isinstance(f, SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFinder())


def compiled() -> bool:
    """Whether this process runs tmem's compiled modules (False: pure Python)."""
    module = importlib.import_module(WITNESS)
    return not (module.__file__ or "").endswith(".py")

"""The build steps pyproject.toml cannot express (it stays the metadata source).

The hot modules are compiled to C extensions with mypyc when mypyc is
importable and the machine's C compiler works: the engine (``tmem.engine``),
the page stores (``tmem.store``), the set-dueling counters
(``tmem.setdueling``), the argument checks (``tmem.arguments``) and the
embedded host (``tmem.host`` and ``tmem.host_transfer``), so that a page call
runs compiled from the host's entry point to the store; and the wire
protocol's frame and message codecs (``tmem.wire.frames``,
``tmem.wire.messages``), the daemon's server (``tmem.daemon.server``; its
loop's turns stay in Python, where signal handlers run) and its request
dispatch (``tmem.daemon.dispatch``).  Otherwise, or if compiling fails, the
package installs as pure Python, which runs the same sources.
``TMEM_BUILD_PURE=1`` skips compiling.
``tmem.compiled()`` says which build is running; ``TMEM_PURE=1`` at run time
uses the ``.py`` sources even where compiled modules are installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: What mypyc compiles, relative to src/ (chosen by measurement: docs/benchmarks.md).
COMPILED = [
    "tmem/engine/",
    "tmem/store/",
    "tmem/setdueling.py",
    "tmem/arguments.py",
    "tmem/host.py",
    "tmem/host_transfer.py",
    "tmem/remote.py",
    "tmem/tier/demoter.py",
    "tmem/wire/frames.py",
    "tmem/wire/messages.py",
    "tmem/daemon/dispatch.py",
    "tmem/daemon/server.py",
]

#: The SSD tier's read and decode in C (tmem.tier.fastload), optional as before.
FASTLOAD = Extension("tmem.tier._fastload", ["src/tmem/tier/_fastload.c"], optional=True)
#: The embedded host's lock with a cheaper acquire (tmem.hostlock), optional too.
HOSTLOCK = Extension("tmem._hostlock", ["src/tmem/_hostlock.c"], optional=True)
#: lz4 for one page holding the GIL (tmem.store.codecs), optional the same way.
LZ4PAGE = Extension("tmem.store._lz4page", ["src/tmem/store/_lz4page.c"], optional=True)
#: Many MADV_DONTNEED ranges in one process_madvise call (tmem.store.release), optional too.
RELEASE = Extension("tmem.store._release", ["src/tmem/store/_release.c"], optional=True)
#: The daemon's and the remote client's socket calls (tmem.wire.sockio), optional too.
SOCKIO = Extension("tmem.wire._sockio", ["src/tmem/wire/_sockio.c"], optional=True)
#: The extensions written in C by hand: each builds or not on its own.
HAND_WRITTEN = (FASTLOAD, HOSTLOCK, LZ4PAGE, RELEASE, SOCKIO)


def compiler_works() -> bool:
    """Whether the machine's C compiler builds against this Python's headers."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "probe.c")
        source.write_text("#include <Python.h>\nint probe(void) { return Py_IsInitialized(); }\n")
        compiler = new_compiler()
        customize_compiler(compiler)
        try:
            compiler.compile(
                [str(source)], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except Exception as error:  # noqa: BLE001 - any failure means: no compiler
            print(f"tmem: C compiler unusable ({error}); installing pure Python", file=sys.stderr)
            return False
    return True


def mypyc_extensions() -> list[Extension]:
    """The compiled modules, or none where mypyc or the compiler is missing."""
    if os.environ.get("TMEM_BUILD_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("tmem: mypyc not importable; installing pure Python", file=sys.stderr)
        return []
    if not compiler_works():
        return []
    here = os.getcwd()
    os.chdir("src")  # module names come from paths relative to src/
    try:
        extensions = mypycify(
            [
                # The build environment lacks the runtime dependencies' types:
                # they are Any here, which changes no compiled behaviour.
                "--ignore-missing-imports",
                "--no-warn-unused-configs",
                "--config-file=../pyproject.toml",
                f"--python-version={sys.version_info.major}.{sys.version_info.minor}",
                *COMPILED,
            ],
            group_name="tmem",
            target_dir="../build/mypyc",
        )
    finally:
        os.chdir(here)
    for extension in extensions:
        extension.sources = [_from_src(source) for source in extension.sources]
        extension.include_dirs = [_from_src(path) for path in extension.include_dirs]
    return extensions


def _from_src(path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join("src", path))


class BuildAllOrNone(build_ext):
    """Build the compiled modules all together, or none of them.

    A module whose extension built while the shared library failed would not
    import; so one failure removes every compiled module built, leaving the
    pure-Python package (the extensions written by hand stay optional, each on its own).
    """

    def build_extensions(self) -> None:
        self.check_extensions_list(self.extensions)
        compiled = [ext for ext in self.extensions if ext not in HAND_WRITTEN]
        remove_stale(Path(self.build_lib), compiled_too=not compiled)  # what this build makes
        if not compiled and self.inplace:  # none of an earlier build may win over the sources
            remove_stale(Path("src"), compiled_too=True, hand_written=False)
        try:
            for extension in compiled:
                self.build_extension(extension)
        except Exception as error:  # noqa: BLE001 - a failed build falls back to Python
            print(f"tmem: compiling failed ({error}); installing pure Python", file=sys.stderr)
            self._remove(compiled)
            self.extensions = list(HAND_WRITTEN)
        for extension in HAND_WRITTEN:
            with self._filter_build_errors(extension):
                self.build_extension(extension)

    def _remove(self, extensions: list[Extension]) -> None:
        for extension in extensions:
            for path in (self.get_ext_fullpath(extension.name),):
                if os.path.exists(path):
                    os.remove(path)
            if self.inplace:
                build_py = self.get_finalized_command("build_py")
                package = ".".join(extension.name.split(".")[:-1])
                base = extension.name.split(".")[-1] + sysconfig.get_config_var("EXT_SUFFIX")
                target = Path(build_py.get_package_dir(package), base)
                if target.exists():
                    target.unlink()
        shutil.rmtree(self.build_temp, ignore_errors=True)


def remove_stale(root: Path, compiled_too: bool, hand_written: bool = True) -> None:
    """Remove extension modules an earlier build left under ``root`` (src/ or the
    build directory), so that they can neither win over the ``.py`` files of a pure
    install nor ship in its wheel: the extensions written by hand (unless
    ``hand_written`` is False: those in src/ are kept until new ones replace them)
    and, if ``compiled_too``, the compiled modules.
    """
    for path in [*root.glob("tmem__mypyc*.so"), *root.glob("tmem/**/*.so")]:
        by_hand = path.name.startswith(
            ("_fastload.", "_hostlock.", "_lz4page.", "_release.", "_sockio.")
        )
        if (by_hand and hand_written) or (not by_hand and compiled_too):
            print(f"tmem: removing {path} (left by an earlier build)", file=sys.stderr)
            path.unlink()


setup(ext_modules=[*mypyc_extensions(), *HAND_WRITTEN], cmdclass={"build_ext": BuildAllOrNone})

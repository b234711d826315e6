"""Build the workload benchmark's fixed page corpus, with its provenance.

    python bench/build_corpus.py [--pages 2048] [--out src/tmem/workload/data]

Writes ``corpus.xz`` (the pages, concatenated, xz-compressed) and
``corpus.json`` (where every page came from).  Run once; the result is
shipped in the package so that every machine and every Python version
replays the same bytes.  Four kinds of real pages, interleaved in runs of 16
so that any stretch of the corpus mixes them:

* ``text``: source files of CPython's standard library (PSF licence);
* ``code``: CPython's extension modules, ``lib-dynload/*.so`` (PSF licence);
* ``heap``: the anonymous memory (heap and allocator arenas) of a Python
  process started with an empty environment that parses and indexes part of
  the standard library;
* ``packed``: the bundled pip wheel, a zip file (MIT licence): data that is
  already compressed.

It must run under CPython 3.11.7, whose files the manifest names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PAGE = 4096
RUN = 16
#: Share of the corpus per kind (sums to 1).
SHARES = {"text": 0.30, "code": 0.25, "heap": 0.30, "packed": 0.15}
PINNED = "3.11.7"

HEAP_SCRIPT = r"""
import ast, json, os, re, sys, sysconfig
root = sysconfig.get_paths()["stdlib"]
trees, index = {}, {}
for sub in ("email", "json", "http", "logging", "asyncio"):
    for name in sorted(os.listdir(os.path.join(root, sub))):
        if name.endswith(".py"):
            path = os.path.join(root, sub, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            trees[path] = ast.parse(text)
            for word in re.findall(r"[A-Za-z_]+", text):
                index.setdefault(word, []).append(path)
dumped = json.dumps({k: len(v) for k, v in index.items()})
maps = []
with open("/proc/self/maps") as f:
    for line in f:
        fields = line.split()
        if "rw" in fields[1] and (len(fields) < 6 or fields[5] == "[heap]"):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            maps.append((lo, hi))
out = sys.stdout.buffer
with open("/proc/self/mem", "rb", buffering=0) as mem:
    for lo, hi in maps:
        try:
            mem.seek(lo)
            out.write(mem.read(hi - lo))
        except OSError:
            pass
"""


def file_pages(paths: list[Path], want: int) -> tuple[list[bytes], list[str]]:
    """Pages of the files in order (each file's last page zero-padded), up to ``want``."""
    pages, used = [], []
    for path in paths:
        data = path.read_bytes()
        used.append(str(path))
        for off in range(0, len(data), PAGE):
            pages.append(data[off : off + PAGE].ljust(PAGE, b"\0"))
        if len(pages) >= want:
            break
    return pages[:want], used


def heap_pages(want: int) -> list[bytes]:
    """Pages of a real Python process's anonymous memory (an empty environment)."""
    raw = subprocess.run(
        [sys.executable, "-I", "-S", "-c", HEAP_SCRIPT],
        env={},
        cwd="/",
        capture_output=True,
        check=True,
    ).stdout
    return [raw[off : off + PAGE] for off in range(0, len(raw) - PAGE + 1, PAGE)][:want]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path("src/tmem/workload/data"))
    args = parser.parse_args()
    version = sys.version.split()[0]
    if version != PINNED:
        sys.exit(f"run under CPython {PINNED} (this is {version}): the manifest names its files")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    want = {kind: int(args.pages * share) for kind, share in SHARES.items()}
    want["heap"] += args.pages - sum(want.values())
    sources = {}
    text = sorted(
        p
        for sub in (
            "email",
            "json",
            "http",
            "logging",
            "asyncio",
            "xml",
            "importlib",
            "urllib",
            "unittest",
        )
        for p in (stdlib / sub).rglob("*.py")
    )
    sources["text"] = file_pages(text, want["text"])
    sources["code"] = file_pages(sorted((stdlib / "lib-dynload").glob("*.so")), want["code"])
    wheels = sorted((stdlib / "ensurepip" / "_bundled").glob("pip-*.whl"))
    sources["packed"] = file_pages(wheels, want["packed"])
    sources["heap"] = (heap_pages(want["heap"]), [f"anonymous memory of CPython {version}"])
    order, taken = [], dict.fromkeys(sources, 0)
    while True:
        open_kinds = [k for k in sources if taken[k] < len(sources[k][0])]
        if not open_kinds:
            break
        kind = min(open_kinds, key=lambda k: taken[k] / len(sources[k][0]))
        run = sources[kind][0][taken[kind] : taken[kind] + RUN]
        order.append((kind, taken[kind], len(run)))
        taken[kind] += len(run)
    body = b"".join(b"".join(sources[k][0][start : start + n]) for k, start, n in order)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus.xz").write_bytes(lzma.compress(body, preset=9 | lzma.PRESET_EXTREME))
    manifest = {
        "page_size": PAGE,
        "pages": len(body) // PAGE,
        "sha256": hashlib.sha256(body).hexdigest(),
        "built_with": f"CPython {version} ({sys.platform}), bench/build_corpus.py",
        "kinds": {
            "text": {"licence": "PSF-2.0", "what": "CPython standard library sources"},
            "code": {"licence": "PSF-2.0", "what": "CPython lib-dynload extension modules"},
            "heap": {"licence": "none needed", "what": "a Python process's anonymous memory"},
            "packed": {"licence": "MIT", "what": "pip's wheel bundled with CPython"},
        },
        "files": {
            k: [os.path.relpath(p, stdlib) for p in v[1]] for k, v in sources.items() if k != "heap"
        },
        "runs": [[kind, start, n] for kind, start, n in order],
    }
    for kind, (pages, _) in sources.items():
        manifest["kinds"][kind]["pages"] = len(pages)
    (args.out / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(body) // PAGE} pages, {(args.out / 'corpus.xz').stat().st_size} bytes xz")


if __name__ == "__main__":
    main()

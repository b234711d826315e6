"""Density of the page stores: real pages from this machine, every algorithm.

Pages come from the machine itself: the heap of a live Python process (a
child that parses part of the standard library and builds a dict, read
through ``/proc/PID/mem``), binaries and shared libraries, text files, plus
zero and random pages.  For each store configuration (raw, lz4, zstd, with
and without deduplication) the script puts the whole mix into a fresh host's
persistent pool, gets it back, and reports:

* the compression ratio (page bytes / bytes kept) and the dedup ratio;
* real memory per stored page: the store's ``mem_used_total``, the host's
  ``bytes`` (which adds the engine's metadata), and the growth of resident
  memory of a fresh process that stores the same pages (``--rss``);
* the store's memory held against the sum of compressed sizes (goal <= 1.1);
* microseconds per put and per get, and the ratio to the raw store's put
  and to a dict of bytes in the same run (goal: lz4 put <= 3x raw).

Every timing is the median of ``--rounds`` rounds, the configurations taking
turns within each round so that the machine's noise falls on all of them;
ratios are taken within a round.  Per-source compression ratios follow.

    python bench/density.py [--pages 3000] [--rounds 5] [--rss] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import tmem

PAGE = 4096
#: name -> (compress, dedup) of the host.
CONFIGS: dict[str, tuple[str | None, str | None]] = {
    "raw": (None, None),
    "lz4": ("lz4", None),
    "zstd": ("zstd", None),
    "lz4+dedup": ("lz4", "client"),
    "zstd+dedup": ("zstd", "client"),
}

_HEAP_CHILD = """
import ast, sys, sysconfig
from pathlib import Path
lib = Path(sysconfig.get_paths()["stdlib"])
trees = [ast.parse(p.read_text(errors="replace")) for p in sorted(lib.glob("*.py"))[:120]]
table = {i: ("key-%d" % i, i * 3.5, [i, str(i)]) for i in range(100_000)}
print("ready", flush=True)
sys.stdin.read()
"""


# --- where the pages come from ----------------------------------------------------


def heap_pages(limit: int) -> list[bytes]:
    """Pages of a live Python process's heap and anonymous memory, via /proc/PID/mem."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HEAP_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        return _read_anonymous(child.pid, limit)
    finally:
        child.kill()
        child.wait()


def _read_anonymous(pid: int, limit: int) -> list[bytes]:
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        name = fields[5] if len(fields) > 5 else ""
        if fields[1].startswith("rw") and name in ("", "[heap]"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            regions.append((start, end))
    pages: list[bytes] = []
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for start, end in regions:
            for addr in range(start, end, PAGE):
                try:
                    data = os.pread(mem.fileno(), PAGE, addr)
                except OSError:
                    continue  # not mapped in, or guard page
                if len(data) == PAGE:
                    pages.append(data)
    return _spread(pages, limit)


def _spread(pages: list[bytes], limit: int) -> list[bytes]:
    """At most ``limit`` pages taken evenly across the list (keeps its variety)."""
    if len(pages) <= limit:
        return pages
    step = len(pages) / limit
    return [pages[int(i * step)] for i in range(limit)]


def file_pages(paths: Iterator[Path], limit: int, per_file: int = 32) -> list[bytes]:
    """Whole pages of files, up to ``per_file`` from each; the last one zero-padded."""
    pages: list[bytes] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read(per_file * PAGE)
        except OSError:
            continue
        for off in range(0, len(data), PAGE):
            pages.append(data[off : off + PAGE].ljust(PAGE, b"\0"))
            if len(pages) >= limit:
                return pages
    return pages


def binary_paths() -> Iterator[Path]:
    """Executables and shared libraries, in a fixed order."""
    dirs = [Path("/usr/bin"), Path("/usr/lib/x86_64-linux-gnu"), Path(sys.executable).parent]
    dynload = Path(sysconfig.get_paths()["platstdlib"], "lib-dynload")
    for d in [*dirs, dynload]:
        if d.is_dir():
            yield from (p for p in sorted(d.iterdir()) if p.is_file() and not p.is_symlink())


def text_paths() -> Iterator[Path]:
    """Python sources, licences and documentation text, in a fixed order."""
    yield from sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    for d in (Path("/usr/share/common-licenses"), Path("/usr/share/doc")):
        if d.is_dir():
            yield from (p for p in sorted(d.rglob("*")) if p.is_file() and p.suffix != ".gz")


def sources(n: int) -> dict[str, list[bytes]]:
    """``n`` pages of each real source, and a tenth as many zero and random pages."""
    rng = random.Random(1)
    return {
        "heap": heap_pages(n),
        "binaries": file_pages(binary_paths(), n),
        "text": file_pages(text_paths(), n),
        "zero": [bytes(PAGE)] * (n // 10),
        "random": [rng.randbytes(PAGE) for _ in range(n // 10)],
    }


# --- measurements -----------------------------------------------------------------


def store_round(pages: list[bytes], compress: str | None, dedup: str | None) -> dict:
    """Put then get every page on a fresh host; seconds and the host's statistics."""
    host = tmem.Host(capacity=1 << 40, compress=compress, dedup=dedup)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True)
    put, get = client.put_page, client.get_page
    start = time.perf_counter()
    for i, data in enumerate(pages):
        put(pool, i >> 10, i & 1023, data)
    mid = time.perf_counter()
    for i in range(len(pages)):
        get(pool, i >> 10, i & 1023)
    end = time.perf_counter()
    assert all(get(pool, i >> 10, i & 1023) == d for i, d in enumerate(pages[:200]))
    return {"put": mid - start, "get": end - mid, "stats": host.stats()}


def dict_round(pages: list[bytes]) -> dict:
    """The same puts and gets on a dict of bytes (put copies, as the host does)."""
    store: dict[tuple[int, int], bytes] = {}
    start = time.perf_counter()
    for i, data in enumerate(pages):
        store[(i >> 10, i & 1023)] = bytes(bytearray(data))
    mid = time.perf_counter()
    for i in range(len(pages)):
        store.get((i >> 10, i & 1023))
    return {"put": mid - start, "get": time.perf_counter() - mid}


def density(stats: dict, n: int) -> dict:
    """Sizes per page and ratios from a host's statistics after ``n`` puts."""
    store = stats["store"]
    compr = store["compr_data_size"]
    return {
        # zram's figure, orig_data_size / compr_data_size (None when nothing is kept)
        "compression_ratio": store["orig_data_size"] / compr if compr else None,
        "dedup_ratio": stats["dedup_ratio"],
        "store_bytes_per_page": store["mem_used_total"] / n,
        "host_bytes_per_page": stats["bytes"] / n,
        "compressed_bytes_per_page": compr / n,
        "held_over_compressed": store["mem_used_total"] / compr if compr else None,
        "same_pages": store.get("same_pages", 0),
        "huge_pages": store.get("huge_pages", 0),
    }


_RSS_CHILD = """
import gc, json, sys, psutil, tmem
data = open(sys.argv[1], "rb").read()
pages = [data[i : i + 4096] for i in range(0, len(data), 4096)]
del data
kind = sys.argv[2]
gc.collect()
before = psutil.Process().memory_info().rss
if kind == "dict":
    keep = {i: bytes(bytearray(p)) for i, p in enumerate(pages)}
else:
    compress, dedup = json.loads(sys.argv[3])
    host = tmem.Host(1 << 40, compress=compress, dedup=dedup)
    client = host.connect("rss")
    pool = client.new_pool(persistent=True)
    for i, p in enumerate(pages):
        client.put_page(pool, i >> 10, i & 1023, p)
gc.collect()
print(psutil.Process().memory_info().rss - before)
"""


def rss_growth(pages: list[bytes], kind: str, config: tuple | None = None) -> int:
    """Resident memory grown by storing ``pages`` in a fresh process (host or dict)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"".join(pages))
        f.flush()
        args = [sys.executable, "-c", _RSS_CHILD, f.name, kind, json.dumps(config)]
        return int(subprocess.run(args, check=True, capture_output=True).stdout)


def measure(pages: list[bytes], rounds: int, with_rss: bool) -> dict:
    """Every configuration over the mixed pages, rounds interleaved; medians of the rounds.

    Ratios are taken within each round (each configuration against the raw
    store and the dict of that round), then their median is reported.
    """
    n = len(pages)
    dict_runs: list[dict] = []
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for _ in range(rounds):
        dict_runs.append(dict_round(pages))
        for name, config in CONFIGS.items():
            runs[name].append(store_round(pages, *config))
    out: dict = {"pages": n, "rounds": rounds, "configs": {}}
    out["dict_us"] = {
        op: statistics.median(r[op] for r in dict_runs) / n * 1e6 for op in ("put", "get")
    }
    for name, config in CONFIGS.items():
        mine = runs[name]
        row = density(mine[-1]["stats"], n)
        for op in ("put", "get"):
            row[f"{op}_us"] = statistics.median(r[op] for r in mine) / n * 1e6
            row[f"{op}_vs_raw"] = statistics.median(
                r[op] / raw[op] for r, raw in zip(mine, runs["raw"], strict=True)
            )
        row["put_vs_dict"] = statistics.median(
            r["put"] / d["put"] for r, d in zip(mine, dict_runs, strict=True)
        )
        if with_rss:
            grown = statistics.median(rss_growth(pages, "host", config) for _ in range(3))
            row["rss_bytes_per_page"] = grown / n
        out["configs"][name] = row
    if with_rss:
        grown = statistics.median(rss_growth(pages, "dict") for _ in range(3))
        out["dict_rss_bytes_per_page"] = grown / n
    return out


def per_source(by_source: dict[str, list[bytes]]) -> dict:
    """Compression and memory per page of each source alone, for each codec (no dedup)."""
    out: dict = {}
    for source, pages in by_source.items():
        for name in ("lz4", "zstd", "lz4+dedup"):
            stats = store_round(pages, *CONFIGS[name])["stats"]
            out.setdefault(source, {"pages": len(pages)})[name] = density(stats, len(pages))
    return out


# --- report -----------------------------------------------------------------------


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def report(result: dict) -> str:
    """The figures as Markdown tables."""
    mix = ", ".join(f"{k} {v}" for k, v in result["mix"].items())
    lines = [
        f"Mixed pages: {result['pages']} ({mix}).",
        "",
        "| store | compression | dedup | store B/page | host B/page | held / compressed"
        " | RSS B/page | put µs | get µs | put / raw put | put / dict put |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["configs"].items():
        lines.append(
            f"| {name} | {_f(r['compression_ratio'])} | {_f(r['dedup_ratio'])}"
            f" | {r['store_bytes_per_page']:.0f} | {r['host_bytes_per_page']:.0f}"
            f" | {_f(r['held_over_compressed'], '.3f')} | {_f(r.get('rss_bytes_per_page'), '.0f')}"
            f" | {r['put_us']:.1f} | {r['get_us']:.1f} | {r['put_vs_raw']:.2f}"
            f" | {r['put_vs_dict']:.2f} |"
        )
    d = result["dict_us"]
    lines.append(f"\ndict of bytes: put {d['put']:.1f} µs, get {d['get']:.1f} µs")
    if "dict_rss_bytes_per_page" in result:
        lines.append(f"dict of bytes: RSS {result['dict_rss_bytes_per_page']:.0f} B/page")
    lines += [
        "",
        "| source | pages | same-filled | lz4 ratio | zstd ratio | lz4 held / compressed"
        " | zstd held / compressed | dedup ratio | lz4 host B/page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for source, r in result["sources"].items():
        lz4, zstd, dd = r["lz4"], r["zstd"], r["lz4+dedup"]
        lines.append(
            f"| {source} | {r['pages']} | {lz4['same_pages']} | {_f(lz4['compression_ratio'])}"
            f" | {_f(zstd['compression_ratio'])} | {_f(lz4['held_over_compressed'], '.3f')}"
            f" | {_f(zstd['held_over_compressed'], '.3f')} | {_f(dd['dedup_ratio'])}"
            f" | {lz4['host_bytes_per_page']:.0f} |"
        )
    lines.append(f"\nMachine: {result['machine']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000, help="pages per real source")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (median)")
    parser.add_argument("--rss", action="store_true", help="also measure resident memory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    by_source = sources(args.pages)
    mix = [p for pages in by_source.values() for p in pages]
    random.Random(2).shuffle(mix)
    result = measure(mix, args.rounds, args.rss)
    result["mix"] = {k: len(v) for k, v in by_source.items()}
    result["sources"] = per_source(by_source)
    result["machine"] = _machine()
    print(json.dumps(result, indent=2) if args.json else report(result))


def _machine() -> str:
    import platform

    import psutil

    mem = psutil.virtual_memory().total / 2**30
    return textwrap.shorten(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" {mem:.0f} GiB, Python {platform.python_version()}, {platform.system()}"
        f" {platform.release()}",
        200,
    )


if __name__ == "__main__":
    main()

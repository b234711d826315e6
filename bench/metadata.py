"""What the host's records of its pages cost in memory, against what it charges.

Each shape fills a fresh embedded host (raw 4 KiB pages, a capacity that
never evicts) in a child process and reports, per page, beyond the page's
own bytes:

* ``rss``: the process's resident memory grown over the fill (psutil);
* ``traced``: the Python heap grown over the fill (``tracemalloc``, in one
  more process of its own; it counts what a growing array has reserved but
  not written, which RSS does not; ``--no-trace``: not run, 0);
* ``charged``: what the host charges for the pages, their objects and the
  pool (``host.stats()["bytes"]``);
* the structures themselves, summed from their sizes after the fill: the
  page table's arrays (``table``, every slot, free ones included), the
  pools' dicts of objects and of pages (``dicts``), the int objects those
  dicts hold that are not the interpreter's cached small ints (``ints``),
  the object ids the page table holds, each distinct one once (``oids``),
  and the clients' handle tables of the adaptive order and the ghosts
  (``handles``, ephemeral pools only; not charged).

The shapes: frontswap's (one persistent pool, 16 objects of many pages,
object ids 0-15, indexes from 0), cleancache's (an ephemeral pool, files of
64 pages with 192-bit object ids made afresh for every call, as a frontend
computes them), and one page per object with random 192-bit ids; each
figure is the median of ``--repeats`` processes.

    python bench/metadata.py [--pages 200000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from typing import Any

PROBE = textwrap.dedent(
    """
    import gc, json, os, random, sys, tracemalloc
    import psutil, tmem
    from tmem.engine.metadata import structure_bytes
    n, per_object, oid_bits, persistent, objects, trace = (int(a) for a in sys.argv[1:7])
    page_size = 4096
    rng = random.Random(1)
    base = os.urandom(page_size)
    host = tmem.Host(capacity=1 << 40, compress=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=bool(persistent), page_size=page_size)
    if objects:  # frontswap's handles: slot & 15, slot >> 4
        handles = [(i % objects, i // objects) for i in range(n)]
    else:
        count = n // per_object + 1
        ids = [rng.getrandbits(oid_bits) if oid_bits else k for k in range(count)]
        first = 1000 if per_object > 1 else 0
        handles = [(ids[i // per_object], first + i % per_object) for i in range(n)]
    proc = psutil.Process()
    gc.collect()
    if trace:
        tracemalloc.start()
    before, charged = proc.memory_info().rss, host.stats()["bytes"]
    for i, (oid, index) in enumerate(handles):
        oid = int(str(oid))  # a fresh int at every call, as a frontend or the wire makes
        page = i.to_bytes(8, "little") + base[8:]
        assert client.put_page(pool, oid, index, page)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] if trace else 0
    grown = proc.memory_info().rss - before
    charged = host.stats()["bytes"] - charged
    parts = structure_bytes(host.engine)
    out = {"rss": grown / n - page_size, "traced": traced / n, "charged": charged / n - page_size}
    out.update({k: v / n for k, v in parts.items()})
    print(json.dumps(out))
    """
)

#: name -> (pages per object, object id bits, persistent, objects (0: per_object))
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "frontswap (16 objects)": (0, 0, 1, 16),
    "cleancache (64 a file, 192-bit ids)": (64, 192, 0, 0),
    "one page an object, 192-bit ids": (1, 192, 1, 0),
    "64 an object, ids 0, 1, 2, ...": (64, 0, 1, 0),
}


def measure(pages: int, repeats: int, trace: bool) -> dict[str, dict[str, float]]:
    """Per-page figures of every shape, each the median of ``repeats`` processes; the
    traced heap from one more process that runs under tracemalloc (whose own tables
    would swell the others' RSS)."""

    def probe(per_object: int, bits: int, persistent: int, objects: int, traced: bool) -> Any:
        args = [pages, per_object or 1, bits, persistent, objects, int(traced)]
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *map(str, args)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(done.stdout)

    out: dict[str, dict[str, float]] = {}
    for name, shape in SHAPES.items():
        runs = [probe(*shape, False) for _ in range(repeats)]
        out[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        out[name]["traced"] = probe(*shape, True)["traced"] if trace else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true", help="do not start tracemalloc")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import tmem

    report: dict[str, Any] = {
        "pages": args.pages,
        "compiled": tmem.compiled(),
        "load_before": os.getloadavg()[0],
        "shapes": measure(args.pages, args.repeats, not args.no_trace),
        "load_after": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"bytes a page beyond its data, {args.pages:,} pages of 4 KiB, median of"
        f" {args.repeats}; {'compiled' if report['compiled'] else 'pure Python'};"
        f" load {report['load_before']:.1f} -> {report['load_after']:.1f}"
    )
    keys = ["rss", "traced", "charged", "table", "dicts", "ints", "oids", "handles"]
    print(f"{'shape':38}" + "".join(f"{k:>9}" for k in keys))
    for name, row in report["shapes"].items():
        print(f"{name:38}" + "".join(f"{row.get(k, 0):9.1f}" for k in keys))


if __name__ == "__main__":
    main()

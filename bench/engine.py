"""Engine CPU per operation against a dict doing the same work, in the same run.

For 4 KiB pages on an embedded host (one thread, a persistent pool so every
get hits), times put, get and flush, and the same work on a ``dict`` keyed by
handle tuples that copies exactly what the host copies: a put stores one copy
of the page, a get returns one fresh copy, a flush pops.  The lz4 host is set
against a dict that stores ``lz4.block.compress(page)`` and returns
``lz4.block.decompress(...)``, on compressible pages cut from the Python
standard library's sources (the ratio is printed).  Flushes go in a random
order (the same for every system).  Each round runs every system once, the
order rotating from round to round; figures are CPU time of this thread
(``time.thread_time``), medians over the rounds of each system's figure and
of the ratios taken within a round.

``--memory`` fills a fresh host in a child process with ``--memory-pages``
pages, flushes them all, and prints what the machine sees before, full and
after: the process's RssAnon and RssShmem, the system's Shmem and
MemAvailable.  ``--scale`` prints user CPU per put, get and flush for pool
sizes from 10k pages up (512-byte pages, so that 2.5M pages fit in 1.3 GiB),
each size in a fresh process and at least a million operations of each kind
(rounds of a small pool), the sizes taking turns ``--scale-repeats`` times.
``--release`` times the raw flush alone under variants of the arena's release
rule (``SlotArena.free_ratio`` 1, the default, 2 and 3; one ``madvise`` per range
instead of ``process_madvise`` batches; no release until the arena empties)
against the dict, user and system CPU of the thread, order rotated.
``--metadata`` prints, for every page size and object shape (one page or 64
per object, random 192-bit object ids or sequential small ones), the resident bytes a page
adds beyond its data against what the host charges for it, and the same per
empty pool.

    python bench/engine.py [--pages 20000] [--rounds 7] [--memory] [--scale] [--json]
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
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lz4.block

import tmem

PAGE = 4096
clock = time.thread_time  # user and system time of this thread: a release's kernel work counts


def raw_pages(n: int) -> list[bytes]:
    """Distinct incompressible pages (a counter over one random page)."""
    base = os.urandom(PAGE)
    return [i.to_bytes(8, "little") + base[8:] for i in range(n)]


def text_pages(n: int) -> list[bytes]:
    """Distinct pages cut from the standard library's ``.py`` sources (lz4 ratio about 2)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    blob = bytearray()
    for path in sorted(root.glob("*.py")):
        blob += path.read_bytes()
        if len(blob) >= n * PAGE:
            break
    while len(blob) < n * PAGE:
        blob.extend(bytes(blob))
    return [bytes(blob[i * PAGE : (i + 1) * PAGE]) for i in range(n)]


def _timed(fn: Callable[[], object]) -> float:
    start = clock()
    fn()
    return clock() - start


def host_round(pages: list[bytes], order: list[int], compress: str | None) -> dict[str, float]:
    """CPU seconds for N puts, N gets, N flushes (in ``order``) on a fresh host."""
    host = tmem.Host(capacity=len(pages) * (PAGE + 1024), compress=compress, dedup=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True)
    put, get, flush = client.put_page, client.get_page, client.flush_page

    def puts() -> None:
        for i, data in enumerate(pages):
            put(pool, i >> 6, i & 63, data)

    def gets() -> None:
        for i in range(len(pages)):
            get(pool, i >> 6, i & 63)

    def flushes() -> None:
        for i in order:
            flush(pool, i >> 6, i & 63)

    out = {"put": _timed(puts), "get": _timed(gets), "flush": _timed(flushes)}
    assert client.stats()["succ_gets"] == len(pages), "every get must hit"
    assert host.stats()["pages"] == 0
    return out


def dict_round(pages: list[bytes], order: list[int], compress: str | None) -> dict[str, float]:
    """CPU seconds for the same work on a dict keyed by (pool, oid, index).

    Raw: a put stores one copy of the page (``memoryview(page).tobytes()``), a
    get returns one fresh copy; lz4: a put stores the compressed page, a get
    decompresses it.  A flush pops.
    """
    store: dict[tuple[int, int, int], bytes] = {}
    pool = 0
    if compress == "lz4":
        pack = lz4.block.compress
        unpack = lz4.block.decompress

        def puts() -> None:
            for i, data in enumerate(pages):
                store[(pool, i >> 6, i & 63)] = pack(data, store_size=False)

        def gets() -> None:
            for i in range(len(pages)):
                unpack(store[(pool, i >> 6, i & 63)], PAGE)

    else:

        def puts() -> None:
            for i, data in enumerate(pages):
                store[(pool, i >> 6, i & 63)] = memoryview(data).tobytes()

        def gets() -> None:
            for i in range(len(pages)):
                memoryview(store[(pool, i >> 6, i & 63)]).tobytes()

    def flushes() -> None:
        for i in order:
            store.pop((pool, i >> 6, i & 63), None)

    out = {"put": _timed(puts), "get": _timed(gets), "flush": _timed(flushes)}
    assert not store
    return out


def release_round(
    pages: list[bytes], order: list[int], ratio: int, hot_limit: int, batched: bool
) -> float:
    """CPU seconds (user and system) of a random-order raw flush under one release rule."""
    from tmem.store.release import RELEASER

    host = tmem.Host(capacity=len(pages) * (PAGE + 1024), compress=None, dedup=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True)
    put, flush = client.put_page, client.flush_page
    for i, data in enumerate(pages):
        put(pool, i >> 6, i & 63, data)
    for arena in host.store._arenas.values():  # type: ignore[attr-defined]
        arena.free_ratio, arena.hot_limit = ratio, hot_limit
    was, RELEASER.batched = RELEASER.batched, batched and RELEASER.batched

    def flushes() -> None:
        for i in order:
            flush(pool, i >> 6, i & 63)

    try:
        return _timed(flushes)
    finally:
        RELEASER.batched = was


#: name -> (free_ratio, hot_limit, batched) of ``--release``'s variants
RELEASE_RULES = {
    "ratio 1 (default)": (1, 64, True),
    "ratio 1, one madvise a range": (1, 64, False),
    "ratio 2": (2, 64, True),
    "ratio 3": (3, 64, True),
    "no release until empty": (1, 1 << 40, True),
}


def release_rules(n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Raw flush µs per page under each release rule and the dict's, and each ÷ the dict's
    (medians over rounds, order rotated)."""
    raw = raw_pages(n)
    order = list(range(n))
    random.Random(1).shuffle(order)
    names = ["dict", *RELEASE_RULES]
    runs: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name == "dict":
                runs[name].append(dict_round(raw, order, None)["flush"])
            else:
                runs[name].append(release_round(raw, order, *RELEASE_RULES[name]))
    return {
        k: {
            "us": statistics.median(v) / n * 1e6,
            "ratio": statistics.median(a / b for a, b in zip(v, runs["dict"], strict=True)),
        }
        for k, v in runs.items()
    }


SYSTEMS = {
    "dict": (dict_round, None),
    "host": (host_round, None),
    "dict_lz4": (dict_round, "lz4"),
    "host_lz4": (host_round, "lz4"),
}


def operations(n: int, rounds: int) -> dict[str, object]:
    """Per-op CPU µs of every system and host/dict ratios, medians over rotated rounds."""
    raw, text = raw_pages(n), text_pages(n)
    ratio = n * PAGE / sum(len(lz4.block.compress(p, store_size=False)) for p in text)
    order = list(range(n))
    random.Random(1).shuffle(order)
    names = list(SYSTEMS)
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, compress = SYSTEMS[name]
            runs[name].append(fn(text if compress else raw, order, compress))
    ops: dict[str, dict[str, float]] = {}
    for op in ("put", "get", "flush"):
        row = {k + "_us": statistics.median(r[op] for r in runs[k]) / n * 1e6 for k in names}
        for host, ref in (("host", "dict"), ("host_lz4", "dict_lz4")):
            pairs = zip(runs[host], runs[ref], strict=True)
            row[host + "_ratio"] = statistics.median(h[op] / d[op] for h, d in pairs)
        ops[op] = row
    return {"pages": n, "rounds": rounds, "lz4_pages": "stdlib .py sources",
            "lz4_ratio": ratio, "ops": ops}  # fmt: skip


MEMORY_PROBE = textwrap.dedent(
    """
    import json, os, sys, tmem

    def machine():
        out = {}
        for line in open("/proc/self/status"):
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
        for line in open("/proc/meminfo"):
            key, _, value = line.partition(":")
            if key in ("Shmem", "MemAvailable"):
                out[key] = int(value.split()[0]) * 1024
        return out

    n, compress = int(sys.argv[1]), sys.argv[2]
    compress = None if compress == "none" else compress
    host = tmem.Host(capacity=n * 8192, compress=compress, dedup=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True)
    seed = os.urandom(2048)
    pages = [i.to_bytes(8, "little") + seed + bytes(2040) for i in range(64)]
    before = machine()
    for i in range(n):
        page = i.to_bytes(8, "little") + pages[i & 63][8:]
        assert client.put_page(pool, i >> 9, i & 511, page)
    full = machine()
    for oid in range((n >> 9) + 1):
        client.flush_object(pool, oid)
    after = machine()
    print(json.dumps({"before": before, "full": full, "after": after}))
    """
)


def memory(n: int, compress: str | None) -> dict[str, object]:
    """What the machine sees before, full and after filling and flushing ``n`` pages."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(n), str(compress).lower()],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fig = json.loads(out.stdout)
    before, full, after = fig["before"], fig["full"], fig["after"]

    def used(f: dict[str, int]) -> int:  # this process's anonymous and shmem memory
        return f["RssAnon"] + f["RssShmem"]

    grown = used(full) - used(before)
    return {
        "pages": n,
        "compress": compress,
        "filled_mib": grown / 2**20,
        "left_mib": (used(after) - used(before)) / 2**20,
        "left_fraction": (used(after) - used(before)) / grown,
        "shmem_left_mib": (after["Shmem"] - before["Shmem"]) / 2**20,
        "memavailable_lost_mib": (before["MemAvailable"] - after["MemAvailable"]) / 2**20,
        "memavailable_dip_mib": (before["MemAvailable"] - full["MemAvailable"]) / 2**20,
    }


SCALE_PROBE = textwrap.dedent(
    """
    import json, os, resource, sys, tmem
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    base = os.urandom(512)
    pages = [i.to_bytes(8, "little") + base[8:] for i in range(64)]
    host = tmem.Host(capacity=n * 1024, compress=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True, page_size=512)
    put, get, flush = client.put_page, client.get_page, client.flush_page
    user = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_utime
    spent = {"put": 0.0, "get": 0.0, "flush": 0.0}
    for _ in range(rounds):  # small pools: many rounds, so the clock's tick is no error
        t0 = user()
        for i in range(n):
            put(pool, i >> 6, i & 63, pages[i & 63])
        t1 = user()
        for i in range(n):
            get(pool, i >> 6, i & 63)
        t2 = user()
        for i in range(n):
            flush(pool, i >> 6, i & 63)
        t3 = user()
        spent["put"] += t1 - t0
        spent["get"] += t2 - t1
        spent["flush"] += t3 - t2
    print(json.dumps({op: t / (n * rounds) * 1e6 for op, t in spent.items()}))
    """
)

#: Each size's probe runs at least this many operations of each kind (rounds of a
#: small pool), so that user time, counted in clock ticks, is measured to ~1%.
SCALE_MIN_OPS = 1_000_000


def scale(sizes: list[int], repeats: int) -> dict[str, object]:
    """User CPU µs per op at each pool size: a fresh process per size and repeat, the
    sizes taking turns (order rotated each repeat), medians of ``repeats``; each
    size's ratio to the smallest is the median of the ratios within one repeat."""
    figs: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for r in range(repeats):
        for n in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
            rounds = -(-SCALE_MIN_OPS // n)
            out = subprocess.run(
                [sys.executable, "-c", SCALE_PROBE, str(n), str(rounds)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figs[n].append(json.loads(out.stdout))
    first = figs[sizes[0]]
    rows: dict[int, dict[str, float]] = {}
    for n in sizes:
        row: dict[str, float] = {"rounds": -(-SCALE_MIN_OPS // n)}
        for op in ("put", "get", "flush"):
            ratios = [f[op] / ref[op] for f, ref in zip(figs[n], first, strict=True)]
            row[op] = statistics.median(f[op] for f in figs[n])
            row[op + "_vs_first"] = statistics.median(ratios)
            row[op + "_vs_first_min"], row[op + "_vs_first_max"] = min(ratios), max(ratios)
        rows[n] = row
    return {"page_size": 512, "repeats": repeats, "min_ops": SCALE_MIN_OPS, "rows": rows}


METADATA_PROBE = textwrap.dedent(
    """
    import gc, json, os, random, sys, psutil, tmem
    n, page_size, per_object, oid_bits = (int(a) for a in sys.argv[1:5])
    rng = random.Random(1)
    base = os.urandom(page_size)
    host = tmem.Host(capacity=1 << 40, compress=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True, page_size=page_size)
    count = n // per_object + 1  # random ids, or 0, 1, 2, ... for oid_bits 0
    oids = [rng.getrandbits(oid_bits) for _ in range(count)] if oid_bits else range(count)
    first = 1000 if per_object > 1 else 0  # indexes past the interpreter's cached ints
    proc = psutil.Process()
    gc.collect()
    before, charged = proc.memory_info().rss, host.stats()["bytes"]
    for i in range(n):
        oid = int(str(oids[i // per_object]))  # a fresh int, as the wire decoder makes
        page = i.to_bytes(8, "little") + base[8:]
        assert client.put_page(pool, oid, first + i % per_object, page)
    gc.collect()
    grown, charged = proc.memory_info().rss - before, host.stats()["bytes"] - charged
    print(json.dumps([grown / n - page_size, charged / n - page_size]))
    """
)

POOL_PROBE = textwrap.dedent(
    """
    import gc, json, sys, psutil, tmem
    n = int(sys.argv[1])
    host = tmem.Host(capacity=1 << 40, compress=None)
    clients = [host.connect(f"c{i}") for i in range(8)]
    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    for i in range(n):
        clients[i % 8].new_pool(persistent=bool(i & 1))
    gc.collect()
    print(json.dumps([(proc.memory_info().rss - before) / n, host.stats()["bytes"] / n]))
    """
)

#: (page size, pages per object, bits of random object ids or 0 for 0, 1, 2, ...)
#: measured by ``--metadata``.
METADATA_SHAPES = [
    (page, per_object, bits)
    for page in (512, 4096, 65536)
    for per_object in (1, 64)
    for bits in (192, 0)
]


def metadata(repeats: int = 3) -> dict[str, Any]:
    """Resident and charged bytes per page beyond its data, for every shape, and per
    empty pool; each figure the median of ``repeats`` fresh processes."""

    def probe(code: str, *args: int) -> list[float]:
        out = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    shapes = []
    for page, per_object, bits in METADATA_SHAPES:
        n = min(400_000, (256 << 20) // page)  # 256 MiB of data, or 400,000 pages
        runs = [probe(METADATA_PROBE, n, page, per_object, bits) for _ in range(repeats)]
        shapes.append(
            {
                "page_size": page, "pages_per_object": per_object, "oid_bits": bits,
                "resident": statistics.median(r[0] for r in runs),
                "charged": statistics.median(r[1] for r in runs),
            }
        )  # fmt: skip
    pools = [probe(POOL_PROBE, 100_000) for _ in range(repeats)]
    return {
        "shapes": shapes,
        "pool": {
            "resident": statistics.median(p[0] for p in pools),
            "charged": statistics.median(p[1] for p in pools),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory", action="store_true", help="fill/flush memory figure")
    parser.add_argument("--memory-pages", type=int, default=200_000)
    parser.add_argument("--scale", action="store_true", help="CPU per op from 10k pages up")
    parser.add_argument("--scale-sizes", default="10000,100000,1000000,2500000")
    parser.add_argument("--scale-repeats", type=int, default=5, help="turns of every size")
    parser.add_argument("--metadata", action="store_true", help="resident bytes per page")
    parser.add_argument("--release", action="store_true", help="raw flush under release rules")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {"load_before": os.getloadavg()[0], "compiled": tmem.compiled()}
    ops: dict[str, Any] = {}
    if args.pages:  # --pages 0: only the figures asked for by flags
        report["operations"] = ops = operations(args.pages, args.rounds)
    if args.memory:
        report["memory"] = [memory(args.memory_pages, c) for c in (None, "lz4")]
    if args.scale:
        sizes = [int(s) for s in args.scale_sizes.split(",")]
        report["scale"] = scale(sizes, args.scale_repeats)
    if args.metadata:
        report["metadata"] = metadata()
    if args.release:
        report["release"] = release_rules(args.pages or 20000, args.rounds)
    report["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if ops:
        print(
            f"{ops['pages']} pages of 4 KiB, {ops['rounds']} rounds (order rotated),"
            f" CPU time of one thread; lz4 on {ops['lz4_pages']} (ratio {ops['lz4_ratio']:.2f});"
            f" load {report['load_before']:.1f} -> {report['load_after']:.1f};"
            f" {'compiled' if report['compiled'] else 'pure Python'}"
        )
        print(
            f"{'op':6} {'dict':>7} {'host':>7} {'ratio':>6}"
            f" {'dict lz4':>9} {'host lz4':>9} {'ratio':>6}"
        )
        for op, row in ops["ops"].items():
            print(
                f"{op:6} {row['dict_us']:7.3f} {row['host_us']:7.3f} {row['host_ratio']:6.2f}"
                f" {row['dict_lz4_us']:9.3f} {row['host_lz4_us']:9.3f} {row['host_lz4_ratio']:6.2f}"
            )
    for fig in report.get("memory", []):
        print(
            f"memory, {fig['pages']} pages, compress={fig['compress']}: filled"
            f" {fig['filled_mib']:.1f} MiB, left after flush {fig['left_mib']:.1f} MiB"
            f" ({fig['left_fraction']:.1%}); Shmem left {fig['shmem_left_mib']:.1f} MiB;"
            f" MemAvailable lost {fig['memavailable_lost_mib']:.1f} MiB"
            f" (dipped {fig['memavailable_dip_mib']:.1f} MiB when full)"
        )
    if "scale" in report:
        sc = report["scale"]
        print(
            f"user CPU µs per op (512-byte pages; medians of {sc['repeats']} turns, at least"
            f" {sc['min_ops']:,} ops each), and against the smallest pool (range in brackets):"
        )
        for n, r in sc["rows"].items():
            print(
                f"  {n:>9,} pages:"
                + "".join(
                    f"  {op} {r[op]:.2f} ({r[op + '_vs_first']:.2f}x"
                    f" [{r[op + '_vs_first_min']:.2f}-{r[op + '_vs_first_max']:.2f}])"
                    for op in ("put", "get", "flush")
                )
            )
    if "release" in report:
        print("raw flush in random order, CPU µs per page (user + system) and ÷ the dict:")
        for name, row in report["release"].items():
            print(f"  {name:30} {row['us']:6.3f}  {row['ratio']:5.2f}")
    if "metadata" in report:
        meta = report["metadata"]
        print("bytes per page beyond its data: resident (RSS) / charged by the host")
        for row in meta["shapes"]:
            ids = f"random {row['oid_bits']}-bit" if row["oid_bits"] else "sequential"
            print(
                f"  {row['page_size']:>6} B pages, {row['pages_per_object']:>2} per object,"
                f" {ids:>14} ids: {row['resident']:6.0f} / {row['charged']:4.0f}"
            )
        pool = meta["pool"]
        print(f"per empty pool: {pool['resident']:.0f} / {pool['charged']:.0f}")


if __name__ == "__main__":
    main()

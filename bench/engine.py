"""Engine throughput and metadata per page, against a plain dict in the same run.

For 4 KiB pages on an embedded host (one thread, no compression), times put,
get and flush and the same work on a ``dict`` of ``bytes`` keyed by handle
tuples (put copies the page, as the host does). Each figure is the median of
several rounds; the ratio host/dict is what to read. Then, in fresh
processes, the resident memory grown per stored page beyond its 4096 data
bytes, for the host and for the dict.

    python bench/engine.py [--pages 20000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

import tmem

PAGE = 4096


def _pages(n: int) -> list[bytes]:
    base = os.urandom(PAGE)
    return [i.to_bytes(8, "little") + base[8:] for i in range(n)]


def _time(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def host_round(pages: list[bytes], compress: str | None) -> dict[str, float]:
    """Seconds for N puts, N gets (persistent pool), N flushes on a fresh host."""
    host = tmem.Host(capacity=len(pages) * (PAGE + 1024), compress=compress)
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
        for i in range(len(pages)):
            flush(pool, i >> 6, i & 63)

    out = {"put": _time(puts), "get": _time(gets), "flush": _time(flushes)}
    assert client.stats()["succ_gets"] == len(pages), "every get must hit"
    return out


def dict_round(pages: list[bytes], copy_out: bool = False) -> dict[str, float]:
    """Seconds for the same work on a dict keyed by (pool, oid, index).

    A put copies the page, as the host does. A get returns the stored bytes
    object itself, or with ``copy_out`` a fresh copy of it, as the host must
    (its pages live in arenas whose slots are reused).
    """
    store: dict[tuple[int, int, int], bytes] = {}
    pool = 0

    def puts() -> None:
        for i, data in enumerate(pages):
            store[(pool, i >> 6, i & 63)] = bytes(bytearray(data))

    def gets() -> None:
        for i in range(len(pages)):
            store.get((pool, i >> 6, i & 63))

    def gets_copied() -> None:
        for i in range(len(pages)):
            memoryview(store[(pool, i >> 6, i & 63)]).tobytes()

    if copy_out:
        puts()
        return {"get": _time(gets_copied)}

    def flushes() -> None:
        for i in range(len(pages)):
            store.pop((pool, i >> 6, i & 63), None)

    return {"put": _time(puts), "get": _time(gets), "flush": _time(flushes)}


MEMORY_PROBE = textwrap.dedent(
    """
    import gc, json, os, sys, psutil, tmem
    n, kind = int(sys.argv[1]), sys.argv[2]
    base = os.urandom(4096)
    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    if kind == "host":
        host = tmem.Host(capacity=n * 8192, compress=None)
        client = host.connect("bench")
        pool = client.new_pool(persistent=True)
        for i in range(n):
            client.put_page(pool, i >> 6, i & 63, i.to_bytes(8, "little") + base[8:])
        assert host.stats()["pages"] == n
    else:
        store = {}
        for i in range(n):
            store[(0, i >> 6, i & 63)] = i.to_bytes(8, "little") + base[8:]
    print(json.dumps((proc.memory_info().rss - before) / n - 4096))
    """
)


def metadata_per_page(n: int, kind: str) -> float:
    """Resident bytes grown per stored page beyond its 4096 data bytes, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(n), kind],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-pages", type=int, default=100000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pages = _pages(args.pages)
    runs: dict[str, list[dict[str, float]]] = {"dict": [], "host": [], "host_lz4": []}
    copied: list[float] = []
    for _ in range(args.rounds):
        runs["dict"].append(dict_round(pages))
        copied.append(dict_round(pages, copy_out=True)["get"])
        runs["host"].append(host_round(pages, None))
        runs["host_lz4"].append(host_round(pages, "lz4"))
    report: dict[str, object] = {"pages": args.pages, "rounds": args.rounds, "ops": {}}
    for op in ("put", "get", "flush"):
        row = {}
        for kind, rounds in runs.items():
            secs = statistics.median(r[op] for r in rounds)
            row[kind + "_us"] = secs / args.pages * 1e6
        row["ratio"] = row["host_us"] / row["dict_us"]
        row["ratio_lz4"] = row["host_lz4_us"] / row["dict_us"]
        report["ops"][op] = row
    copy_us = statistics.median(copied) / args.pages * 1e6
    report["ops"]["get"]["dict_copy_us"] = copy_us
    report["ops"]["get"]["ratio_to_copy"] = report["ops"]["get"]["host_us"] / copy_us
    mem = {k: [metadata_per_page(args.memory_pages, k) for _ in range(3)] for k in ("host", "dict")}
    report["metadata_bytes_per_page"] = {k: statistics.median(v) for k, v in mem.items()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.pages} pages of 4 KiB, median of {args.rounds} rounds, one thread")
    print(f"{'op':6} {'dict µs':>9} {'host µs':>9} {'ratio':>6} {'lz4 µs':>9} {'ratio':>6}")
    for op, row in report["ops"].items():
        print(
            f"{op:6} {row['dict_us']:9.3f} {row['host_us']:9.3f} {row['ratio']:6.2f}"
            f" {row['host_lz4_us']:9.3f} {row['ratio_lz4']:6.2f}"
        )
    get = report["ops"]["get"]
    print(
        f"get against a dict get that copies the page out ({get['dict_copy_us']:.3f} µs):"
        f" ratio {get['ratio_to_copy']:.2f}"
    )
    meta = report["metadata_bytes_per_page"]
    print(
        f"resident bytes per page beyond its data ({args.memory_pages} pages, median of 3): "
        f"host {meta['host']:.0f}, dict {meta['dict']:.0f}"
    )


if __name__ == "__main__":
    main()

"""A get of a page in RAM while other clients' gets read pages from the SSD tier.

Starts ``tmem serve --capacity 2M --tier ssd:DIR:64M`` (the source tree of
``--src``, this one by default, and with ``--compare DIR`` another tree's
daemon too, in turns), fills it from ``--slow`` client processes (each
``--pages`` persistent pages: most go down to the SSD tier), then times
``--gets`` gets of one page in RAM by another client in this process: first
while the slow clients are idle, then while each of them gets its pages in
a loop (nearly every one a disk read).  A daemon that reads the tier in its
serving thread makes the quick client's get wait for those reads; one that
hands them to its fetch workers does not.  Figures: p50 and p99 of the quick
gets, alone and busy, and busy ÷ alone, medians of ``--runs`` runs (the
trees take turns, each run starting with the other); the slow clients' gets
per second and the share of them that were tier loads.

    python bench/daemon_fetches.py [--runs 3] [--gets 2000] [--slow 4] [--pages 1000]
                                   [--src DIR] [--compare DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import tmem

SRC = Path(__file__).resolve().parent.parent / "src"
PAGE = 4096

#: A slow client: fill, say "ready", wait for "go", then get its pages in a loop until
#: stdin closes; then print how many gets it did.
SLOW = textwrap.dedent("""
    import random, sys, time, tmem
    address, name, pages = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = tmem.connect(address, name=name)
    pool = client.new_pool(persistent=True)
    rng = random.Random(name)
    for i in range(pages):
        data = rng.randbytes(2048) + bytes(2048)
        while not client.put_page(pool, 1, i, data):
            time.sleep(0.005)
    print("ready", flush=True)
    sys.stdin.readline()
    order = list(range(pages))
    rng.shuffle(order)
    import threading
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    done = 0
    while not stop.is_set():
        for i in order[:50]:
            client.get_page(pool, 1, i)
        order = order[50:] + order[:50]
        done += 50
    print(done, flush=True)
""")


def start_daemon(src: Path, directory: str) -> tuple[subprocess.Popen, str]:
    path = os.path.join(directory, f"d{time.monotonic_ns()}.sock")
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", path, "--capacity", "2M",
           "--tier", f"ssd:{directory}:64M", "--log-level", "error"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"tmem serve exited with {proc.returncode}")
        try:
            tmem.admin("unix:" + path).close()
            return proc, "unix:" + path
        except (OSError, tmem.TmemError):
            time.sleep(0.05)
    raise RuntimeError("tmem serve did not start")


def timed_gets(client: Any, pool: int, n: int) -> list[int]:
    """Put one page then get it (timed), ``n`` times: the put keeps it the newest page, so
    the demoter leaves it in RAM."""
    page = random.Random(0).randbytes(PAGE)
    clock, out = time.perf_counter_ns, []
    for _ in range(n):
        assert client.put_page(pool, 9, 0, page)
        start = clock()
        got = client.get_page(pool, 9, 0)
        out.append(clock() - start)
        assert got == page
    return out


def pick(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def one_run(src: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tmem-bench-fetch-") as directory:
        proc, address = start_daemon(src, directory)
        slows: list[subprocess.Popen] = []
        try:
            for k in range(args.slow):
                slows.append(subprocess.Popen(
                    [sys.executable, "-c", SLOW, address, f"slow{k}", str(args.pages)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                ))  # fmt: skip
            for slow in slows:
                assert slow.stdout is not None and slow.stdout.readline().strip() == "ready"
            admin = tmem.admin(address)
            quick = tmem.connect(address, name="quick")
            pool = quick.new_pool(persistent=True)
            alone = timed_gets(quick, pool, args.gets)
            before = admin.stats()["tiering"]["tier_hits"]
            for slow in slows:
                assert slow.stdin is not None
                slow.stdin.write("go\n")
                slow.stdin.flush()
            time.sleep(0.2)
            started = time.perf_counter()
            busy = timed_gets(quick, pool, args.gets)
            seconds = time.perf_counter() - started
            hits = admin.stats()["tiering"]["tier_hits"] - before
            done = 0
            for slow in slows:
                slow.stdin.write("stop\n")  # type: ignore[union-attr]
                slow.stdin.flush()  # type: ignore[union-attr]
                done += int(slow.stdout.readline())  # type: ignore[union-attr]
            quick.close()
            admin.close()
        finally:
            for slow in slows:
                slow.kill()
                slow.wait()
            proc.terminate()
            proc.wait(60)
    return {
        "alone_p50_us": pick(alone, 0.5),
        "alone_p99_us": pick(alone, 0.99),
        "busy_p50_us": pick(busy, 0.5),
        "busy_p99_us": pick(busy, 0.99),
        "slow_gets_per_s": done / seconds,
        "tier_share": hits / done if done else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=4)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--src", type=Path, default=SRC)
    parser.add_argument("--compare", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"src": args.src} | ({"compare": args.compare} if args.compare else {})
    names = list(trees)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(args.runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            print(f"run {r + 1} of {args.runs}: {name}", file=sys.stderr)
            runs[name].append(one_run(trees[name], args))
    report: dict[str, Any] = {"loadavg": os.getloadavg()}
    report["trees"] = {name: str(tree) for name, tree in trees.items()}
    for name in names:
        med = {k: statistics.median(run[k] for run in runs[name]) for k in runs[name][0]}
        med["busy_vs_alone_p50"] = med["busy_p50_us"] / med["alone_p50_us"]
        med["busy_vs_alone_p99"] = med["busy_p99_us"] / med["alone_p99_us"]
        report[name] = med
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"load average {report['loadavg'][0]:.1f}")
    print("| tree | alone p50 / p99 µs | busy p50 / p99 µs | busy ÷ alone p50 / p99 "
          "| slow gets/s | tier loads |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        m = report[name]
        print(f"| {name} | {m['alone_p50_us']:.0f} / {m['alone_p99_us']:.0f} | "
              f"{m['busy_p50_us']:.0f} / {m['busy_p99_us']:.0f} | "
              f"{m['busy_vs_alone_p50']:.2f} / {m['busy_vs_alone_p99']:.2f} | "
              f"{m['slow_gets_per_s']:.0f} | {m['tier_share']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()

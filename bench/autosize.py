"""Auto-sizing on real memory pressure: a daemon gives memory back to a competing process.

In memory cgroups below one parent of ``--limit`` bytes: a ``tmem serve``
daemon whose host clients fill to ``--fill`` bytes, then a competing process
that allocates ``--compete`` bytes step by step (more than the parent has
left), holds them and frees them.  Run twice in the same invocation, the
order rotated each round:

* ``auto``: ``--capacity auto`` (floor 8 MiB, ceiling = fill + 16 MiB);
* ``fixed``: ``--capacity`` = the same ceiling, the reference.

Reported per arrangement (medians over ``--runs`` rounds): whether the
competitor finished or the OOM killer took it (or the daemon), the daemon's
RSS before the competitor and at its lowest while the competitor ran, the
auto-size steps in which the machine was short, the bytes asked and freed in
each of them, and the largest shortfall left after a step (0 = every step
freed what was asked).

    python bench/autosize.py [--runs 3] [--limit 400M] [--fill 150M] [--compete 240M] [--json]

Needs root and a memory cgroup hierarchy (v1, or v2 with the memory
controller); says why and exits 2 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import serving

import tmem
from tmem.units import format_size, parse_size
from tmem.workload.cgroups import CgroupUnavailable, MemoryCgroup, command_in
from tmem.workload.pressure import fill_host, parse_steps

TUNABLES = (
    "interval=0.2,min_free=0.2,grow_free=0.3,grow_after=1,grow_limit=0.1,grow_share=0.5,"
    "pressure_limit=0.2"
)


def rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 once it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def one_run(auto: bool, limit: int, fill: int, compete: int, tmp: Path) -> dict[str, Any]:
    """One arrangement, in fresh cgroups; its figures."""
    ceiling = fill + (16 << 20)
    parent = MemoryCgroup.create(f"tmem-bench-{os.getpid()}-{'auto' if auto else 'fixed'}")
    groups = [parent]
    try:
        parent.set_limit(limit)
        daemon_group = MemoryCgroup.create("daemon", parent)
        rival_group = MemoryCgroup.create("competitor", parent)
        groups += [daemon_group, rival_group]
        sock = str(tmp / ("a.sock" if auto else "f.sock"))
        sizing = (
            ["--capacity", "auto", "--capacity-floor", "8M", "--capacity-ceiling",
             str(ceiling), "--autosize", TUNABLES]
            if auto
            else ["--capacity", str(ceiling)]
        )  # fmt: skip
        log_path = tmp / ("auto.log" if auto else "fixed.log")
        with open(log_path, "w") as log:
            daemon = serving.start(
                sock, "--compress", "none", *sizing,
                wrap=lambda argv: command_in(daemon_group, argv), stderr=log,
            )  # fmt: skip
        try:
            client = tmem.connect("unix:" + sock, name="filler")
            admin = tmem.admin("unix:" + sock)
            held = fill_host(client, fill, admin, timeout=60)
            before = rss(daemon.pid)
            lowest = [before]
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    value = rss(daemon.pid)
                    if value:
                        lowest[0] = min(lowest[0], value)
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            rival = subprocess.run(
                command_in(rival_group, [sys.executable, "-m", "tmem.workload.pressure",
                           "competitor", "--mib", str(compete >> 20), "--step-mib", "8",
                           "--every", "0.1", "--hold", "1"]),
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            done.set()
            watcher.join()
            daemon_alive = daemon.poll() is None
            with contextlib.suppress(tmem.TmemError):
                client.close()
                admin.close()  # type: ignore[attr-defined]
        finally:
            if daemon.poll() is None:
                daemon.terminate()
            daemon.wait(10)
        steps = [s for s in parse_steps(log_path.read_text()) if s["reason"] != "grow"]
        shortfalls = [
            max(0, s["wanted"] - (s["held"][0] - s["held"][1]))
            for s in steps
            if s["capacity"][1] > 8 << 20  # a step that hit the floor gave all it could
        ]
        return {
            "competitor_finished": rival.returncode == 0,
            "daemon_alive": daemon_alive,
            "oom_kills": sum(g.oom_kills() for g in groups),
            "host_held": held,
            "daemon_rss_before": before,
            "daemon_rss_lowest": lowest[0],
            "short_steps": len(steps),
            "asked": sum(s["wanted"] for s in steps),
            "freed": sum(s["held"][0] - s["held"][1] for s in steps),
            "worst_shortfall": max(shortfalls, default=0),
        }
    finally:
        for group in reversed(groups):
            for pid in group.procs():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            with contextlib.suppress(OSError):
                group.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", default="400M")
    parser.add_argument("--fill", default="150M")
    parser.add_argument("--compete", default="240M")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    limit, fill, compete = (parse_size(v) for v in (args.limit, args.fill, args.compete))
    if os.geteuid() != 0:
        print("bench/autosize.py needs root to create memory cgroups", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, Any]]] = {"auto": [], "fixed": []}
    with tempfile.TemporaryDirectory(prefix="tmem-autosize-") as tmp:
        for i in range(args.runs):
            order = ["auto", "fixed"] if i % 2 == 0 else ["fixed", "auto"]
            for name in order:
                print(f"run {i + 1}: {name}", file=sys.stderr)
                try:
                    runs[name].append(one_run(name == "auto", limit, fill, compete, Path(tmp)))
                except CgroupUnavailable as exc:
                    print(f"no memory cgroup: {exc}", file=sys.stderr)
                    return 2
    table = {
        name: {key: statistics.median(float(r[key]) for r in rows) for key in rows[0]}
        for name, rows in runs.items()
    }
    if args.json:
        print(json.dumps({"runs": runs, "medians": table}, indent=1))
        return 0
    print(f"parent limit {format_size(limit)}, host filled to {format_size(fill)}, "
          f"competitor {format_size(compete)}; load {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(
        "| arrangement | competitor finished | OOM kills | daemon RSS before | lowest "
        "| short steps | asked | freed | worst shortfall after a step |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, f in table.items():
        finished = sum(r["competitor_finished"] for r in runs[name])
        print(
            f"| {name} | {finished} of {len(runs[name])} | {f['oom_kills']:.0f} "
            f"| {format_size(f['daemon_rss_before'])} | {format_size(f['daemon_rss_lowest'])} "
            f"| {f['short_steps']:.0f} | {format_size(f['asked'])} | {format_size(f['freed'])} "
            f"| {format_size(f['worst_shortfall'])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

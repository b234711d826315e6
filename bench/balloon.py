"""Self-ballooning guests and an auto-sized host in the workload: reads and memory held.

Runs ``tmem bench workload``'s cleancache scenario (its default guests and
sizes unless told otherwise) with the configurations ``static``, ``tmem``
(fixed private caches, a host of the spare memory) and ``tmem-balloon``
(the guests' caches self-balloon, the host is auto-sized on a machine of the
same budget, see ``src/tmem/workload/balloon.py``), ``--runs`` times, and
reports the medians of:

* disk reads, and their ratio to ``static`` and to ``tmem`` in the same run,
* disk reads avoided against ``static`` (positive: fewer),
* memory held, as means over the run's steps: *committed* (private cache
  sizes plus the host's capacity) and *used* (pages the caches hold plus the
  host's bytes), in MiB and against the budget every configuration has;

then one more ``tmem-balloon`` run with a pressure spike (``--spike
STEP:SIZE:STEPS``: SIZE bytes of the machine taken for STEPS steps), and
what the host was asked for and freed in the spike's step.

    python bench/balloon.py [--runs 3] [--guest SPEC ...] [-m 256] [-t 8M] [--spike 100:4M:10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from tmem.units import parse_size
from tmem.workload.cli import DEFAULT_GUESTS, DEFAULT_PRIVATE_PAGES, DEFAULT_SPARE
from tmem.workload.config import GuestSpec, WorkloadSpec
from tmem.workload.report import summarize
from tmem.workload.runner import run_workload

CONFIGS = ("static", "tmem", "tmem-balloon")
M = 1 << 20


def figures(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """One run's figures per configuration."""
    ran = {c["name"]: c for c in summary["configurations"] if "total" in c}
    static, fixed = ran["static"]["total"], ran["tmem"]["total"]
    out = {}
    for name, entry in ran.items():
        total, memory = entry["total"], entry["memory"]
        out[name] = {
            "disk_reads": total["disk_reads"],
            "vs_static": total["disk_reads"] / static["disk_reads"],
            "vs_tmem": total["disk_reads"] / fixed["disk_reads"],
            "avoided": static["disk_reads"] - total["disk_reads"],
            "committed_mib": memory["committed_mean"] / M,
            "used_mib": memory["used_mean"] / M,
            "budget_mib": memory["budget"] / M,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guest", action="append", dest="guests")
    parser.add_argument("-m", "--private-pages", type=int, default=DEFAULT_PRIVATE_PAGES)
    parser.add_argument("-t", "--spare", default=DEFAULT_SPARE)
    parser.add_argument("--spike", default="100:4M:10")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    base = dict(
        guests=tuple(GuestSpec.parse(g) for g in args.guests or DEFAULT_GUESTS),
        private_pages=args.private_pages,
        spare_bytes=parse_size(args.spare),
        scenario="cleancache",
    )
    runs = []
    for i in range(args.runs):
        # The configurations run one after another; rotate which goes first.
        order = CONFIGS[i % 3 :] + CONFIGS[: i % 3]
        print(f"run {i + 1} of {args.runs}: {', '.join(order)}", file=sys.stderr)
        runs.append(figures(summarize(run_workload(WorkloadSpec(**base, configurations=order)))))
    table = {
        name: {key: statistics.median(run[name][key] for run in runs) for key in runs[0][name]}
        for name in CONFIGS
    }
    print("spike run", file=sys.stderr)
    spiked = summarize(
        run_workload(WorkloadSpec(**base, configurations=("tmem-balloon",), spike=args.spike))
    )
    entry = spiked["configurations"][0]
    spike = entry["memory"].get("spike", {})
    spike_reads = entry["total"]["disk_reads"]
    if args.json:
        print(json.dumps({"medians": table, "spike": spike, "spike_reads": spike_reads}, indent=1))
        return
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.runs} runs\n")
    print("| cleancache | disk reads | vs static | vs tmem | reads avoided vs static "
          "| memory committed (MiB, mean) | memory used (MiB, mean) | budget (MiB) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, f in table.items():
        print(
            f"| {name} | {f['disk_reads']:.0f} | {f['vs_static']:.3f} | {f['vs_tmem']:.3f} "
            f"| {f['avoided']:+.0f} | {f['committed_mib']:.2f} | {f['used_mib']:.2f} "
            f"| {f['budget_mib']:.2f} |"
        )
    if spike:
        print(
            f"\nspike {args.spike} (step:size:steps): at step {spike['step']} the host was asked "
            f"for {spike['wanted']} bytes and freed {spike['freed_in_step']} within that step "
            f"(capacity {spike['capacity'][0]} -> {spike['capacity'][1]}); disk reads with the "
            f"spike {spike_reads}"
        )


if __name__ == "__main__":
    main()

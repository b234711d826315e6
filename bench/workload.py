"""The workload benchmark repeated: medians of disk I/O against static partitioning.

Runs ``tmem bench workload`` (the same guests, sizes and configurations; by
default its embedded default) several times and reports, per scenario and
configuration, the median over runs of:

* disk (or swap) reads and writes of all guests together, and their ratio to
  ``static`` in the same run (the same memory split evenly; below 1 is better),
* the share of page reads served by tmem,
* CPU µs spent in tmem calls per disk I/O tmem saved, and that against the
  latency of one uncached 4 KiB read from this machine's disk (``O_DIRECT``,
  random offsets in a 64 MiB file, median of 500, measured in the same run;
  the guests' own disk reads mostly hit the OS page cache, so they are no
  reference),
* the host's mean compression and deduplication ratios,

with the lowest and highest of the runs for the ratio to static.

    python bench/workload.py [--runs 3] [--scenario both] [--guest SPEC ...] [-m 256] [-t 8M]
                             [--processes] [--swap-cache keep|drop] [--json]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any

from tmem.units import parse_size
from tmem.workload.cli import DEFAULT_GUESTS, DEFAULT_PRIVATE_PAGES, DEFAULT_SPARE
from tmem.workload.config import SCENARIOS, GuestSpec, WorkloadSpec
from tmem.workload.report import summarize
from tmem.workload.runner import run_workload


def direct_read_us(reads: int = 500, size: int = 64 << 20) -> float | None:
    """Median µs of one 4 KiB ``O_DIRECT`` read at a random offset; None if unsupported."""
    with tempfile.TemporaryDirectory(prefix="tmem-disk-") as tmp:
        path = os.path.join(tmp, "file")
        with open(path, "wb") as f:
            for _ in range(size >> 20):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except (OSError, AttributeError):
            return None
        try:
            buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
            rng = random.Random(0)
            times = []
            for _ in range(reads):
                offset = rng.randrange(size // 4096) * 4096
                start = time.perf_counter_ns()
                os.preadv(fd, [buf], offset)
                times.append(time.perf_counter_ns() - start)
        except OSError:
            return None
        finally:
            os.close(fd)
    return statistics.median(times) / 1000


def figures(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """One run's figures per configuration (see the module's docstring)."""
    ran = {c["name"]: c for c in summary["configurations"] if "unavailable" not in c}
    static = ran["static"]["total"]
    static_io = static["disk_reads"] + static["disk_writes"]
    out = {}
    for name, entry in ran.items():
        total, host = entry["total"], entry.get("host") or {}
        io = total["disk_reads"] + total["disk_writes"]
        out[name] = {
            "disk_reads": total["disk_reads"],
            "disk_writes": total["disk_writes"],
            "io_vs_static": io / static_io,
            "reads_vs_static": total["disk_reads"] / static["disk_reads"],
            "tmem_hit_ratio": total["tmem_hit_ratio"],
            "cpu_us_per_saved_io": total["cpu_us_per_saved_io"] or 0.0,
            "compression_ratio": host.get("compression_ratio", 1.0),
            "dedup_ratio": host.get("dedup_ratio", 1.0),
            "seconds": entry["seconds"],
        }
    return out


def medians(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per configuration and figure: the median over runs, with min and max of io_vs_static."""
    out: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        per = [run[name] for run in runs]
        out[name] = {key: statistics.median(r[key] for r in per) for key in per[0]}
        out[name]["io_vs_static_min"] = min(r["io_vs_static"] for r in per)
        out[name]["io_vs_static_max"] = max(r["io_vs_static"] for r in per)
    return out


def markdown(scenario: str, table: dict[str, dict[str, float]], disk_us: float | None) -> str:
    """The medians as a Markdown table."""
    disk = "swap" if scenario == "frontswap" else "disk"
    lines = [
        f"| {scenario} | {disk} reads | {disk} writes | I/O vs static (min–max) "
        "| reads vs static | tmem hits | CPU µs per I/O saved | ÷ disk read | compr. | dedup |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, f in table.items():
        cpu = f["cpu_us_per_saved_io"]
        vs_disk = f"{cpu / disk_us:.2f}" if disk_us and cpu else "-"
        cpu_text = f"{cpu:.1f}" if cpu else "-"
        lines.append(
            f"| {name} | {f['disk_reads']:.0f} | {f['disk_writes']:.0f} "
            f"| {f['io_vs_static']:.3f} ({f['io_vs_static_min']:.3f}–{f['io_vs_static_max']:.3f}) "
            f"| {f['reads_vs_static']:.3f} | {100 * f['tmem_hit_ratio']:.1f}% "
            f"| {cpu_text} | {vs_disk} | {f['compression_ratio']:.2f} | {f['dedup_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "both"], default="both")
    parser.add_argument("--guest", action="append", dest="guests")
    parser.add_argument("-m", "--private-pages", type=int, default=DEFAULT_PRIVATE_PAGES)
    parser.add_argument("-t", "--spare", default=DEFAULT_SPARE)
    parser.add_argument("--processes", action="store_true", help="guests as daemon clients")
    parser.add_argument(
        "--swap-cache",
        choices=["keep", "drop"],
        default="keep",
        help="frontswap: keep or free a page's swap-file copy on swap-in",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scenarios = SCENARIOS if args.scenario == "both" else (args.scenario,)
    disk_us = direct_read_us()
    results: dict[str, Any] = {}
    for scenario in scenarios:
        spec = WorkloadSpec(
            guests=tuple(GuestSpec.parse(g) for g in args.guests or DEFAULT_GUESTS),
            private_pages=args.private_pages,
            spare_bytes=parse_size(args.spare),
            scenario=scenario,
            processes=args.processes,
            swap_cache=args.swap_cache,
        )
        runs = []
        for i in range(args.runs):
            print(f"{scenario}: run {i + 1} of {args.runs}", file=sys.stderr)
            runs.append(figures(summarize(run_workload(spec))))
        results[scenario] = medians(runs)
    if args.json:
        print(json.dumps({"direct_read_us": disk_us, **results}, indent=1))
    else:
        print(f"uncached 4 KiB disk read (O_DIRECT): {disk_us} µs (median)\n")
        for scenario, table in results.items():
            print(markdown(scenario, table, disk_us) + "\n")


if __name__ == "__main__":
    main()

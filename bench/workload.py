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
* the share of the ideal's gain over static captured, ``(static - config) /
  (static - ideal)`` in reads, the ideal being one global LRU of all the
  memory simulated on the same references (``tmem.workload.ideal``, the same
  in every run); the simulated shared LRU victim cache is reported beside it,

with the lowest and highest of the runs for the ratio to static.  The order
of the configurations is rotated from run to run.  ``--mix all`` runs every
shipped mix in turn.

    python bench/workload.py [--runs 3] [--mix default|all|NAME] [--scenario both]
                             [--guest SPEC ...] [-m 256] [-t 8M]
                             [--processes] [--swap-cache offer|keep|drop] [--json]
                             [--json-out FILE]
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
from tmem.workload.config import CONFIG_NAMES, SCENARIOS, SWAP_CACHE_MODES, GuestSpec, WorkloadSpec
from tmem.workload.mixes import MIXES
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
            "ideal_share": total.get("ideal_share") or 0.0,
        }
    for name, sim in summary.get("ideal", {}).items():
        if name != "static":
            out["sim:" + name] = {
                "disk_reads": sim["disk_reads"],
                "reads_vs_static": sim["disk_reads"] / static["disk_reads"],
            }
    return out


def medians(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per configuration and figure: the median over runs, with min and max of io_vs_static."""
    out: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        per = [run[name] for run in runs]
        out[name] = {key: statistics.median(r[key] for r in per) for key in per[0]}
        if "io_vs_static" in per[0]:
            for key in ("io_vs_static", "reads_vs_static"):
                out[name][key + "_min"] = min(r[key] for r in per)
                out[name][key + "_max"] = max(r[key] for r in per)
    return out


def markdown(scenario: str, table: dict[str, dict[str, float]], disk_us: float | None) -> str:
    """The medians as a Markdown table."""
    disk = "swap" if scenario == "frontswap" else "disk"
    lines = [
        f"| {scenario} | {disk} reads | reads vs static (min–max) | share of ideal "
        f"| {disk} writes | I/O vs static | tmem hits | CPU µs per I/O saved | ÷ disk read "
        "| compr. | dedup |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, f in table.items():
        if name.startswith("sim:"):
            continue
        cpu = f["cpu_us_per_saved_io"]
        vs_disk = f"{cpu / disk_us:.2f}" if disk_us and cpu else "-"
        cpu_text = f"{cpu:.1f}" if cpu else "-"
        share = "-" if name in ("static",) else f"{100 * f['ideal_share']:.0f}%"
        lines.append(
            f"| {name} | {f['disk_reads']:.0f} | {f['reads_vs_static']:.3f} "
            f"({f['reads_vs_static_min']:.3f}–{f['reads_vs_static_max']:.3f}) | {share} "
            f"| {f['disk_writes']:.0f} | {f['io_vs_static']:.3f} "
            f"| {100 * f['tmem_hit_ratio']:.1f}% "
            f"| {cpu_text} | {vs_disk} | {f['compression_ratio']:.2f} | {f['dedup_ratio']:.2f} |"
        )
    for name, f in table.items():
        if name.startswith("sim:"):
            label = {"sim:global_lru": "*ideal: one global LRU*"}.get(
                name, "*one shared LRU victim cache*"
            )
            lines.append(
                f"| {label} | {f['disk_reads']:.0f} | {f['reads_vs_static']:.3f} | "
                + ("100%" if name == "sim:global_lru" else "")
                + " | | | | | | | |"
            )
    return "\n".join(lines)


def save(path: str, results: dict[str, Any]) -> None:
    """Write ``results`` as JSON to ``path``."""
    with open(path, "w") as out:
        json.dump(results, out, indent=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mix", choices=[*MIXES, "all"], default="default")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "both"], default="both")
    parser.add_argument("--config", action="append", dest="configs", choices=CONFIG_NAMES)
    parser.add_argument("--guest", action="append", dest="guests")
    parser.add_argument("-m", "--private-pages", type=int)
    parser.add_argument("-t", "--spare")
    parser.add_argument("--processes", action="store_true", help="guests as daemon clients")
    parser.add_argument(
        "--swap-cache",
        choices=SWAP_CACHE_MODES,
        default="offer",
        help="frontswap: what a page read back from the swap file does (see tmem bench workload)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-out", help="also write the JSON to this file, after every run")
    args = parser.parse_args(argv)
    scenarios = SCENARIOS if args.scenario == "both" else (args.scenario,)
    mixes = list(MIXES) if args.mix == "all" else [args.mix]
    disk_us = direct_read_us()
    results: dict[str, Any] = {}
    for mix_name in mixes:
        mix = MIXES[mix_name]
        for scenario in scenarios:
            spec = WorkloadSpec(
                guests=tuple(GuestSpec.parse(g) for g in args.guests or mix.guests),
                private_pages=args.private_pages or mix.private_pages,
                spare_bytes=parse_size(args.spare or mix.spare),
                scenario=scenario,
                processes=args.processes,
                swap_cache=args.swap_cache,
                configurations=tuple(args.configs or ()),
            )
            chosen = [c.name for c in spec.chosen()]
            runs = []
            ideal = None  # the same in every run: simulated once
            for i in range(args.runs):
                print(f"{mix_name} {scenario}: run {i + 1} of {args.runs}", file=sys.stderr)
                # Rotate the order of the configurations from run to run.
                order = tuple(chosen[i % len(chosen) :] + chosen[: i % len(chosen)])
                rotated = WorkloadSpec(**{**spec.__dict__, "configurations": order})
                result = run_workload(rotated, ideal=ideal)
                ideal = result.ideal
                runs.append(figures(summarize(result)))
                results[f"{mix_name} {scenario}"] = medians(runs)
                if args.json_out:  # after every run: a run cut short keeps what it measured
                    save(args.json_out, {"direct_read_us": disk_us, "runs": i + 1, **results})
    if args.json:
        print(json.dumps({"direct_read_us": disk_us, **results}, indent=1))
    else:
        print(f"uncached 4 KiB disk read (O_DIRECT): {disk_us} µs (median)\n")
        for key, table in results.items():
            print(f"**{key}**\n")
            print(markdown(key.split()[-1], table, disk_us) + "\n")


if __name__ == "__main__":
    main()

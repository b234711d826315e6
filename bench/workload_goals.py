"""The host policy's goals, checked on saved runs of ``bench/workload.py --json-out FILE``.

For every mix and scenario in the files, one row: plain tmem's reads against
static and its share of the ideal's gain (goal: at least 100%), the
configuration that reads most against static (goal: none above 1), and each
compressed configuration's reads against plain tmem's (goal: none above 1);
and plain tmem's reads against ``tmem-lru``'s (the same host with plain LRU
within each client: below 1 where the adaptive order pays).
All figures are the medians the files hold (``runs``: how many runs a file
cut short holds; ``-`` for a finished file of an older bench); nothing is
measured here.  With ``--configs``, a second table: every configuration's
reads against static and, in brackets, its share of the ideal's gain.

    python bench/workload_goals.py [--configs] FILE.json [FILE.json ...]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

#: Configurations that compress pages (their reads are compared with plain tmem's).
COMPRESSED = ("tmem-lz4", "tmem-zstd")


def row(key: str, table: dict[str, dict[str, Any]], runs: Any) -> str:
    """One Markdown row of the goals for ``key`` ("MIX SCENARIO")."""
    ran = {name: f for name, f in table.items() if not name.startswith("sim:")}
    plain = ran["tmem"]
    worst = max(
        (n for n in ran if n not in ("private", "static")), key=lambda n: ran[n]["disk_reads"]
    )
    compressed = ", ".join(
        f"{name.removeprefix('tmem-')} {ran[name]['disk_reads'] / plain['disk_reads']:.3f}"
        for name in COMPRESSED
        if name in ran
    )
    lru = ran.get("tmem-lru")
    vs_lru = f"{plain['disk_reads'] / lru['disk_reads']:.3f}" if lru else "-"
    mix, scenario = key.rsplit(" ", 1)
    return (
        f"| {mix} | {scenario} | {runs} | {plain['reads_vs_static']:.3f} "
        f"| {100 * plain['ideal_share']:.0f}% "
        f"| {worst} {ran[worst]['reads_vs_static']:.3f} | {compressed} | {vs_lru} |"
    )


def configs_table(saved: list[dict[str, Any]]) -> None:
    """Every configuration's reads vs static (share of the ideal) per mix and scenario."""
    tables = [(k, t) for s in saved for k, t in s.items() if isinstance(t, dict)]
    names: list[str] = []
    for _, table in tables:
        names += [n for n in table if not n.startswith("sim:") and n not in names]
    names = [n for n in names if n not in ("private", "static")]
    print("\n| mix | scenario | " + " | ".join(names) + " |")
    print("| --- | --- |" + " ---: |" * len(names))
    for key, table in tables:
        cells = []
        for name in names:
            f = table.get(name)
            share = f and f.get("ideal_share")
            cells.append(
                "-"
                if not f
                else f"{f['reads_vs_static']:.3f}"
                + (f" ({100 * share:.0f}%)" if share is not None else "")
            )
        mix, scenario = key.rsplit(" ", 1)
        print(f"| {mix} | {scenario} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--configs", action="store_true", help="also every configuration")
    args = parser.parse_args(argv)
    saved_all = []
    print(
        "| mix | scenario | runs | tmem reads vs static | tmem share of ideal "
        "| most reads vs static | compressed reads vs tmem | tmem reads vs tmem-lru |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | --- | ---: |")
    for path in args.files:
        with open(path) as f:
            saved = json.load(f)
        saved_all.append(saved)
        for key, table in saved.items():
            if isinstance(table, dict):
                print(row(key, table, saved.get("runs", "-")))
    if args.configs:
        configs_table(saved_all)


if __name__ == "__main__":
    main()

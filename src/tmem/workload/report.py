"""Figures of a workload run: one summary (the ``--json`` output) and rich tables from it.

Both scenarios are put in the same words.  Every page a guest asks for is
exactly one of:

* a **private hit** (its own page cache, or a resident page for frontswap),
* a **tmem hit** (cleancache ``succ_gets``; frontswap ``loads``),
* a **disk read** (the backing file, or the swap file),
* for frontswap only, a **first touch** (a page used for the first time, which
  needs no I/O).

*Avoided* counts compare a configuration with ``static`` (the same memory
split evenly), guest by guest: positive means fewer disk I/Os than static.
The CPU cost is the thread CPU time spent inside tmem calls divided by the
disk I/Os tmem saved: the I/Os of ``private`` (the same private memory and no
tmem) less this configuration's, when ``private`` ran; otherwise the I/Os tmem
itself counts as saved (each tmem hit is a disk read not done; for frontswap
each page tmem accepted is also a swap write not done, unless it was later
written back or shrunk to the swap file).

The *ideal* is a simulation of the same guests' references in the same
schedule with one global LRU cache of all the memory (:mod:`tmem.workload.ideal`);
a configuration's *share of the ideal* is ``(static - config) / (static - ideal)``
in disk (or swap) reads: 100% captures all that ideal sharing saves over static.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tmem.units import format_size
from tmem.workload.ideal import ARRANGEMENTS, IDEAL, ideal_share
from tmem.workload.model import ConfigResult
from tmem.workload.runner import WorkloadResult

REFERENCE = "static"
#: The I/O tmem saved is measured against this configuration when it ran.
BASELINE = "private"

#: Row fields that add up over guests.
_SUMMED = (
    "requests",
    "reads",
    "private_hits",
    "tmem_hits",
    "first_touches",
    "disk_reads",
    "disk_writes",
    "tmem_saves",
    "refused",
    "tmem_cpu_ns",
    "tmem_calls",
)


def guest_row(scenario: str, counters: dict[str, int]) -> dict[str, int]:
    """A guest's counters in the shared words (see the module's docstring)."""
    if scenario == "frontswap":
        faults, first = counters["faults"], counters["first_touches"]
        return {
            "reads": counters["accesses"],
            "private_hits": counters["accesses"] - faults - first,
            "tmem_hits": counters["loads"],
            "first_touches": first,
            "disk_reads": counters["swap_reads"],
            "disk_writes": counters["swap_writes"],
            # A page tmem took but later moved to the swap file saved no write.
            "tmem_saves": counters["loads"]
            + counters["succ_stores"]
            - counters.get("written_back", 0)
            - counters.get("shrunk_pages", 0),
            "refused": counters["failed_stores"],
            "tmem_cpu_ns": counters["tmem_cpu_ns"],
            "tmem_calls": counters["tmem_calls"],
        }
    return {
        "reads": counters["reads"],
        "private_hits": counters["private_hits"],
        "tmem_hits": counters["succ_gets"],
        "first_touches": 0,
        "disk_reads": counters["disk_reads"],
        "disk_writes": counters["disk_writes"],
        "tmem_saves": counters["succ_gets"],
        "refused": counters["failed_puts"],
        "tmem_cpu_ns": counters["tmem_cpu_ns"],
        "tmem_calls": counters["tmem_calls"],
    }


def _derive(
    row: dict[str, Any], reference: dict[str, Any] | None, baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    reads = row["reads"]
    if reference is not None and reference["disk_reads"]:
        row["reads_vs_static"] = row["disk_reads"] / reference["disk_reads"]
    row["hit_ratio"] = (row["private_hits"] + row["tmem_hits"]) / reads if reads else 0.0
    row["tmem_hit_ratio"] = row["tmem_hits"] / reads if reads else 0.0
    saves = row["tmem_saves"]
    if baseline is not None:  # the same guests with the same private memory and no tmem
        saves = baseline["disk_reads"] + baseline["disk_writes"]
        saves -= row["disk_reads"] + row["disk_writes"]
    row["saved_io"] = saves
    counted = row["tmem_calls"] > 0 and saves > 0
    row["cpu_us_per_saved_io"] = row["tmem_cpu_ns"] / 1000 / saves if counted else None
    if reference is not None:
        row["reads_avoided"] = reference["disk_reads"] - row["disk_reads"]
        row["writes_avoided"] = reference["disk_writes"] - row["disk_writes"]
    return row


def summarize(result: WorkloadResult) -> dict[str, Any]:
    """The whole run as plain data: per configuration, per guest and total, and timelines."""
    spec = result.spec
    rows = {r.config.name: _rows(spec.scenario, r) for r in result.results if not r.unavailable}
    reference = rows.get(REFERENCE)
    baseline = rows.get(BASELINE)
    configs = []
    for r in result.results:
        entry: dict[str, Any] = {
            "name": r.config.name,
            "private_pages": r.config.private_pages,
            "host_bytes": r.config.host_bytes,
            "compress": r.config.compress,
            "dedup": r.config.dedup,
        }
        if r.unavailable:
            entry["unavailable"] = r.unavailable
        else:
            guests = rows[r.config.name]
            base = baseline if baseline and r.config.name != BASELINE else None
            for i, row in enumerate(guests):
                _derive(row, reference[i] if reference else None, base[i] if base else None)
            entry.update(
                seconds=r.seconds,
                host=r.host,
                guests=guests,
                total=_derive(
                    _total(guests),
                    _total(reference) if reference else None,
                    _total(base) if base else None,
                ),
                timeline={"accesses": r.steps, "disk_reads": r.io, "host_bytes": r.host_bytes},
                memory=r.memory,
            )
        configs.append(entry)
    ideal = _ideal(result.ideal, _total(reference) if reference else None)
    if reference and IDEAL in ideal:
        static_reads, best = _total(reference)["disk_reads"], ideal[IDEAL]["disk_reads"]
        for entry in configs:
            if "total" in entry:
                total = entry["total"]
                total["ideal_share"] = ideal_share(static_reads, total["disk_reads"], best)
    return {
        "scenario": spec.scenario,
        "private_pages": spec.private_pages,
        "spare_bytes": spec.spare_bytes,
        "page_size": spec.page_size,
        "reference": REFERENCE if reference else None,
        "ideal_arrangement": IDEAL,
        **result.description,
        "ideal": ideal,
        "configurations": configs,
    }


def _ideal(simulated: dict[str, list[int]], reference: dict[str, Any] | None) -> dict[str, Any]:
    """The simulated arrangements' reads, in total and per guest, and against static."""
    out: dict[str, Any] = {}
    for name in ARRANGEMENTS:
        if name not in simulated:
            continue
        reads = sum(simulated[name])
        out[name] = {"disk_reads": reads, "guests": list(simulated[name])}
        if reference and reference["disk_reads"]:
            out[name]["reads_vs_static"] = reads / reference["disk_reads"]
    return out


def _rows(scenario: str, result: ConfigResult) -> list[dict[str, Any]]:
    return [guest_row(scenario, counters) for counters in result.guests]


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: sum(row.get(key, 0) for row in rows) for key in _SUMMED}


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _signed(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:+d}" if key in row else "-"


def _us(row: dict[str, Any]) -> str:
    value = row["cpu_us_per_saved_io"]
    return "-" if value is None else f"{value:.1f}"


def _table(title: str, first: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", pad_edge=False)
    table.add_column(first, justify="left", no_wrap=True)
    for col in columns:
        table.add_column(col, justify="right")
    return table


def config_table(summary: dict[str, Any], entry: dict[str, Any]) -> Table:
    """One configuration: a row per guest and the total."""
    disk = "swap" if summary["scenario"] == "frontswap" else "disk"
    table = _table(
        f"{entry['name']}: {_memory(entry, summary)}",
        "guest",
        (
            "page\nrefs" if disk == "swap" else "page\nreads",
            "private\nhits",
            "tmem\nhits",
            f"{disk}\nreads",
            f"{disk}\nwrites",
            "reads\navoided*",
            "writes\navoided*",
            "µs in tmem\nper I/O saved",
        ),
    )
    for info, row in zip(summary["guests"], entry["guests"], strict=True):
        table.add_row(info["spec"], *_cells(row))
    table.add_row("total", *_cells(entry["total"]), style="bold")
    return table


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        str(row["reads"]),
        _pct(row["private_hits"], row["reads"]),
        _pct(row["tmem_hits"], row["reads"]),
        str(row["disk_reads"]),
        str(row["disk_writes"]),
        _signed(row, "reads_avoided"),
        _signed(row, "writes_avoided"),
        _us(row),
    ]


def _memory(entry: dict[str, Any], summary: dict[str, Any]) -> str:
    private = f"{entry['private_pages']} private pages each"
    if entry["host_bytes"] is None:
        return f"{private}, no tmem"
    extras = [x for x in (entry["compress"], entry["dedup"] and "dedup") if x]
    kind = f" ({', '.join(extras)})" if extras else ""
    return f"{private} + a host of {format_size(entry['host_bytes'])}{kind}"


def overview_table(summary: dict[str, Any]) -> Table:
    """All configurations side by side: totals, hit ratio, host ratios, time."""
    disk = "swap" if summary["scenario"] == "frontswap" else "disk"
    table = _table(
        f"{summary['scenario']}: all configurations",
        "configuration",
        (
            f"{disk}\nreads",
            f"{disk}\nwrites",
            "reads\n÷ static",
            "share of\nideal†",
            "I/O\navoided*",
            "hit\nratio",
            "tmem\nhits",
            "puts\nrefused",
            "compr.\nratio",
            "dedup\nratio",
            "µs in tmem\nper I/O saved",
            "seconds",
        ),
    )
    for entry in summary["configurations"]:
        if "unavailable" in entry:
            table.add_row(entry["name"], f"unavailable: {entry['unavailable']}")
        else:
            table.add_row(entry["name"], *_overview_cells(summary, entry))
    for name, sim in summary.get("ideal", {}).items():
        if name == "static":
            continue
        vs = sim.get("reads_vs_static")
        cells = [str(sim["disk_reads"]), "-", "-" if vs is None else f"{vs:.3f}"]
        cells.append("100%" if name == IDEAL else _share(summary, sim["disk_reads"]))
        table.add_row(SIMULATED_NAMES[name], *cells, *["-"] * 8, style="italic")
    return table


def _share(summary: dict[str, Any], reads: int) -> str:
    ideal = summary["ideal"].get(IDEAL)
    static = next((c for c in summary["configurations"] if c["name"] == REFERENCE), None)
    if not ideal or not static or "total" not in static:
        return "-"
    share = ideal_share(static["total"]["disk_reads"], reads, ideal["disk_reads"])
    return "-" if share is None else f"{100 * share:.0f}%"


def _overview_cells(summary: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    total, host = entry["total"], entry.get("host") or {}
    avoided = total.get("reads_avoided", 0) + total.get("writes_avoided", 0)
    ratios = [f"{host[k]:.2f}" if host else "-" for k in ("compression_ratio", "dedup_ratio")]
    share = total.get("ideal_share")
    return [
        str(total["disk_reads"]),
        str(total["disk_writes"]),
        f"{total['reads_vs_static']:.3f}" if "reads_vs_static" in total else "-",
        "-" if share is None else f"{100 * share:.0f}%",
        f"{avoided:+d}" if summary["reference"] else "-",
        _pct(total["private_hits"] + total["tmem_hits"], total["reads"]),
        _pct(total["tmem_hits"], total["reads"]),
        str(total["refused"]) if entry["host_bytes"] is not None else "-",
        *ratios,
        _us(total),
        f"{entry['seconds']:.1f}",
    ]


def intro(summary: dict[str, Any]) -> str:
    """What the run compares, in one paragraph."""
    disk = "swap" if summary["scenario"] == "frontswap" else "disk"
    n = len(summary["guests"])
    return (
        f"{summary['scenario']}: {n} guests replay real traces; every configuration has the "
        f"same memory ({summary['private_pages']} private pages per guest plus "
        f"{format_size(summary['spare_bytes'])} of spare memory, split evenly by '{REFERENCE}', "
        f"lent by one host under tmem). Compared: {disk} reads (lower is better) against "
        f"'{REFERENCE}', and the share of the ideal's gain each configuration captures, the "
        "ideal being one global LRU of all the memory, simulated on the same references."
    )


SIMULATED_NAMES = {
    "global_lru": "ideal: one global LRU",
    "victim_lru": "one shared LRU victim cache",
    "static": "static (simulated)",
}


def verdict(summary: dict[str, Any]) -> str:
    """Which configuration read least, by how much against static, and its share of the ideal."""
    disk = "swap" if summary["scenario"] == "frontswap" else "disk"
    ran = [c for c in summary["configurations"] if "total" in c]
    if not ran:
        return "verdict: no configuration ran"
    best = min(ran, key=lambda c: c["total"]["disk_reads"])
    total = best["total"]
    text = f"verdict: {best['name']} read least ({total['disk_reads']} {disk} reads"
    if "reads_vs_static" in total:
        text += f", {total['reads_vs_static']:.3f} of {REFERENCE}'s"
    text += ")"
    share = total.get("ideal_share")
    ideal = summary.get("ideal", {}).get(IDEAL)
    if share is not None and ideal:
        text += (
            f" and captured {100 * share:.0f}% of the ideal's gain over {REFERENCE} "
            f"(the ideal reads {ideal['disk_reads']})"
        )
    worse = [c["name"] for c in ran if c["total"].get("reads_vs_static", 0) > 1]
    if worse:
        text += f"; more {disk} reads than {REFERENCE}: {', '.join(worse)}"
    return text + "."


def print_report(summary: dict[str, Any], console: Console) -> None:
    """What is compared, every configuration's table, the overview, and the verdict."""
    console.print(intro(summary))
    for entry in summary["configurations"]:
        if "unavailable" not in entry:
            console.print(config_table(summary, entry))
    console.print(overview_table(summary))
    console.print(
        f"* avoided: disk (or swap) I/Os fewer than '{REFERENCE}' (the same memory split "
        "evenly), guest by guest; hits are shares of all page reads; µs in tmem per I/O "
        f"saved: against '{BASELINE}' (the same private memory, no tmem) when it ran."
    )
    console.print(
        f"† share of ideal: ({REFERENCE} − configuration) ÷ ({REFERENCE} − ideal) in reads; "
        "the ideal and the victim cache are simulated on the same references, "
        "with no metadata and no tmem calls."
    )
    corpus = summary["corpus"]
    console.print(f"page contents: {corpus['describe']}")
    console.print(verdict(summary), style="bold")

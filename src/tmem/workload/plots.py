"""PNG plots of a workload run (matplotlib, the ``plots`` extra).

* ``<prefix>-disk-reads.png``: each configuration's disk (or swap) reads of
  all guests together, as the replay goes on.
* ``<prefix>-host-share.png``: for each tmem configuration, the bytes each
  guest holds in the host as the replay goes on, stacked, with the capacity.

The x axis is the replay's progress: page accesses per guest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tmem.workload.errors import WorkloadError


def check_plots() -> None:
    """Raise WorkloadError now if the plots cannot be drawn (matplotlib missing)."""
    _pyplot()


#: Line styles that keep lines visible where configurations read the same.
_STYLES = [("-", 2.6), ("--", 2.0), (":", 2.4), ("-.", 1.6), ((0, (5, 1)), 1.2), ("-", 0.8)]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise WorkloadError("plots need matplotlib: pip install 'tmem[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(summary: dict[str, Any], directory: Path, prefix: str = "workload") -> list[Path]:
    """Write both plots of ``summary`` (see :func:`tmem.workload.report.summarize`)."""
    directory.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    ran = [c for c in summary["configurations"] if "unavailable" not in c]
    if not ran:
        raise WorkloadError("no configuration ran: nothing to plot")
    paths = [
        _disk_reads(plt, summary, ran, directory / f"{prefix}-disk-reads.png"),
        _host_share(plt, summary, ran, directory / f"{prefix}-host-share.png"),
    ]
    return [p for p in paths if p is not None]


def _disk_reads(plt: Any, summary: dict[str, Any], ran: list[dict[str, Any]], path: Path) -> Path:
    disk = "swap" if summary["scenario"] == "frontswap" else "disk"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for k, entry in enumerate(ran):
            line = entry["timeline"]
            style, width = _STYLES[k % len(_STYLES)]
            ax.plot(
                line["accesses"],
                [sum(sample) for sample in line["disk_reads"]],
                label=entry["name"],
                ls=style,
                lw=width,
                zorder=3 - width / 4,  # thinner lines on top: equal lines stay visible
            )
        ideal = summary.get("ideal", {}).get("global_lru")
        if ideal:
            ax.axhline(ideal["disk_reads"], color="grey", lw=0.8, ls=":", label="ideal at the end")
        ax.set_xlabel("page accesses per guest")
        ax.set_ylabel(f"{disk} reads so far, all guests (lower is better)")
        ax.set_title(
            f"{summary['scenario']}: {disk} reads over time ({len(summary['guests'])} guests)"
        )
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _host_share(
    plt: Any, summary: dict[str, Any], ran: list[dict[str, Any]], path: Path
) -> Path | None:
    hosted = [c for c in ran if c["host_bytes"] is not None]
    if not hosted:
        return None
    names = [g["guest"] + " " + g["spec"] for g in summary["guests"]]
    legend_in = 0.3 + 0.22 * ((len(names) + 1) // 2)  # inches below the plots for the legend
    height = 2.6 * len(hosted) + legend_in
    fig, axes = plt.subplots(len(hosted), 1, figsize=(8, height), squeeze=False)
    try:
        for ax, entry in zip(axes[:, 0], hosted, strict=True):
            line = entry["timeline"]
            mib = [[b / 2**20 for b in sample] for sample in line["host_bytes"]]
            series: list[Any] = list(zip(*mib, strict=True)) if mib else [[] for _ in names]
            ax.stackplot(line["accesses"], *series, labels=names)
            ax.axhline(entry["host_bytes"] / 2**20, color="black", lw=0.8, ls="--")
            ax.set_ylabel("MiB in host")
            title = entry["name"]
            if entry.get("dedup"):
                title += ": a page shared by guests counts for each, so the stack may pass"
                title += " the capacity"
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("page accesses per guest")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
        fig.suptitle(f"{summary['scenario']}: each guest's share of the host (dashed: capacity)")
        fig.tight_layout(rect=(0, legend_in / height, 1, 1))
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path

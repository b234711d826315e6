"""``tmem top``: a live view of a daemon's clients, refreshed from one statistics call.

Each refresh costs the daemon one ``HOST_STATS`` request (the rates are the
differences between two of them), so the view never stalls the daemon, and
a slow or remote daemon only slows the view.  Keys: ``m`` memory, ``s``
share, ``h`` hit ratio, ``p`` puts/s, ``g`` gets/s, ``n`` name sort the
table; ``q`` quits.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tmem.units import format_size

#: Sort keys: key press -> (column heading, row field, largest first).
SORTS: dict[str, tuple[str, str, bool]] = {
    "m": ("memory", "bytes", True),
    "s": ("share", "share", True),
    "h": ("hit ratio", "hit_ratio", True),
    "p": ("puts/s", "puts_per_s", True),
    "g": ("gets/s", "gets_per_s", True),
    "n": ("client", "name", False),
}


def client_rows(
    before: dict[str, Any] | None, after: dict[str, Any], seconds: float
) -> list[dict[str, Any]]:
    """One row per client of ``after``: memory, share of the host, hit ratio and rates
    since ``before`` (rates are 0 for a client ``before`` did not have)."""
    used = max(after["bytes"], 1)
    old = (before or {}).get("clients", {})
    rows = []
    for name, client in after["clients"].items():
        prev = old.get(name)
        rates = {
            key: (client[key] - prev[key]) / seconds if prev and seconds > 0 else 0.0
            for key in ("puts", "gets")
        }
        rows.append({
            "name": name,
            "bytes": client["bytes"],
            "pages": client["pages"],
            "share": client["bytes"] / used,
            "hit_ratio": client["succ_gets"] / client["gets"] if client["gets"] else 0.0,
            "puts_per_s": rates["puts"],
            "gets_per_s": rates["gets"],
            "frozen": client["frozen"],
        })  # fmt: skip
    return rows


def render(stats: dict[str, Any], rows: list[dict[str, Any]], sort: str) -> Group:
    """The header line and the client table, sorted by ``sort`` (a key of :data:`SORTS`)."""
    heading, field, descending = SORTS[sort]
    table = Table(expand=False)
    for key in ("n", "m", "s", "h", "p", "g"):  # the order of the cells below
        title = SORTS[key][0]
        table.add_column(title + (" ▼" if title == heading else ""), justify="right")
    ordered = sorted(rows, key=lambda r: r[field], reverse=descending)
    for row in ordered:
        table.add_row(
            row["name"] + (" (frozen)" if row["frozen"] else ""),
            format_size(row["bytes"]),
            f"{row['share']:.1%}",
            f"{row['hit_ratio']:.1%}",
            f"{row['puts_per_s']:.0f}",
            f"{row['gets_per_s']:.0f}",
        )
    head = Text(
        f"tmem {stats.get('daemon', {}).get('version', '?')}: "
        f"{format_size(stats['bytes'])} of {format_size(stats['capacity'])}, "
        f"{len(stats['clients'])} clients, sorted by {heading}; "
        "keys m s h p g n sort, q quits"
    )
    return Group(head, table)


def run_top(
    admin: Any,
    console: Console,
    interval: float = 1.0,
    sort: str = "m",
    iterations: int | None = None,
) -> None:
    """Refresh every ``interval`` seconds until ``q`` (or ``iterations`` refreshes)."""
    before, then = None, time.monotonic()
    count = 0
    with _keys() as keys, Live(console=console, auto_refresh=False) as live:
        while iterations is None or count < iterations:
            stats, now = admin.stats(), time.monotonic()
            rows = client_rows(before, stats, now - then)
            live.update(render(stats, rows, sort), refresh=True)
            before, then, count = stats, now, count + 1
            if iterations is not None and count >= iterations:
                break
            key = keys(interval)
            if key == "q":
                break
            if key in SORTS:
                sort = key


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """A function that waits up to N seconds for a key press (None if none, or no terminal)."""
    if not sys.stdin.isatty():
        yield lambda seconds: time.sleep(seconds)
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read_key(seconds: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 1).decode(errors="replace").lower() if ready else None

    try:
        yield read_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

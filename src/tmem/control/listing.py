"""``tmem list`` and ``tmem auths`` as tables for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tmem.api import REJECT_REASONS
from tmem.units import format_size

#: Columns of the client table: heading, and how a client's stats give its cell.
CLIENT_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("pages", lambda c: c["pages"]),
    ("bytes", lambda c: format_size(c["bytes"])),
    ("puts", lambda c: c["puts"]),
    ("gets", lambda c: c["gets"]),
    ("hits", lambda c: c["succ_gets"]),
    ("evictions", lambda c: c["evictions"]),
    ("refused", lambda c: refusals(c) or "0"),
    ("weight", lambda c: c["weight"]),
    ("cap", lambda c: "-" if c["cap"] is None else format_size(c["cap"])),
    ("frozen", lambda c: "yes" if c["frozen"] else "no"),
    ("compress", lambda c: c.get("compress", "-")),
)


def refusals(counters: dict[str, Any]) -> str:
    """Refused puts by reason, ``cap:3 frozen:1``; empty if none."""
    return " ".join(
        f"{reason}:{counters['reject_' + reason]}"
        for reason in REJECT_REASONS
        if counters.get("reject_" + reason)
    )


def render_list(console: Console, stats: dict[str, Any]) -> None:
    """Print host totals, each client with its pools, and policies kept for absent names."""
    daemon = stats.get("daemon", {})
    console.print(
        f"[bold]tmem {daemon.get('version', '?')}[/] up {daemon.get('uptime', 0):.0f} s, "
        f"{daemon.get('connections', '?')} connection(s); "
        f"{format_size(stats['bytes'])} used of {format_size(stats['capacity'])}, "
        f"{stats['pages']} pages; compression {stats['compression_ratio']:.2f}x, "
        f"dedup {stats['dedup_ratio']:.2f}x; refused: {refusals(stats) or 'none'}"
    )
    table = Table(title="clients")
    table.add_column("client / pool")
    for heading, _ in CLIENT_COLUMNS:
        table.add_column(heading, justify="right")
    for name, client in sorted(stats["clients"].items()):
        table.add_row(f"[bold]{name}[/]", *(str(cell(client)) for _, cell in CLIENT_COLUMNS))
        for pool_id, pool in sorted(client["pools"].items(), key=lambda kv: int(kv[0])):
            table.add_row(f"  pool {pool_id} {_kind(pool)}", *_pool_cells(pool))
    console.print(table)
    absent = {n: p for n, p in stats.get("policies", {}).items() if n not in stats["clients"]}
    if absent:
        kept = Table(title="policies kept for clients not connected")
        for heading in ("client", "weight", "cap", "frozen", "compress"):
            kept.add_column(heading)
        for name, p in absent.items():
            cap = "-" if p["cap"] is None else format_size(p["cap"])
            frozen = "yes" if p["frozen"] else "no"
            kept.add_row(name, str(p["weight"]), cap, frozen, p["compress"] or "host default")
        console.print(kept)


def _kind(pool: dict[str, Any]) -> str:
    kind = "persistent" if pool["persistent"] else "ephemeral"
    if pool["shared"]:
        kind += f" shared {pool['uuid']}"
    return f"({kind}, {pool['page_size']} B pages)"


def _pool_cells(pool: dict[str, Any]) -> list[str]:
    values = {
        "pages": pool["pages"],
        "bytes": format_size(pool["bytes"]),
        "puts": pool["puts"],
        "gets": pool["gets"],
        "hits": pool["succ_gets"],
        "evictions": pool["evictions"],
        "refused": pool["failed_puts"],
    }
    return [str(values.get(heading, "")) for heading, _ in CLIENT_COLUMNS]


def render_auths(console: Console, grants: dict[str, list[str]]) -> None:
    """Print each shared-pool uuid with the client names allowed to use it."""
    table = Table(title="shared-pool grants")
    table.add_column("uuid")
    table.add_column("clients")
    for uuid, names in sorted(grants.items()):
        table.add_row(uuid, ", ".join(names))
    console.print(table)

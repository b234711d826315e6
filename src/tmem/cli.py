"""The ``tmem`` command: a small demonstration, the daemon and the benchmarks."""

from __future__ import annotations

import random
from typing import Any

import click
from rich.console import Console
from rich.table import Table

import tmem
from tmem.control.commands import COMMANDS as CONTROL_COMMANDS
from tmem.daemon.command import INTERRUPTED, serve
from tmem.errors import TmemError
from tmem.mount_command import mount_command
from tmem.units import format_size, parse_size
from tmem.workload.cli import bench


class Size(click.ParamType):
    """A byte size option: ``4096``, ``512M``, ``2G``."""

    name = "size"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            return parse_size(value)
        except TmemError as exc:
            self.fail(str(exc), param, ctx)


SIZE = Size()


class _Tmem(click.Group):
    """The ``tmem`` group: Ctrl-C ends any command with status 130, as shells expect."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(INTERRUPTED)


@click.group(cls=_Tmem, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    tmem.__version__,
    prog_name="tmem",
    message=f"%(prog)s, version %(version)s ({'compiled' if tmem.compiled() else 'pure Python'})",
)
def main() -> None:
    """Transcendent memory: lend spare RAM to many clients, page by page."""


@main.command()
@click.option("--capacity", type=SIZE, default="256K", show_default=True, help="Host capacity.")
@click.option("--pages", type=int, default=96, show_default=True, help="Pages each guest puts.")
def demo(capacity: int, pages: int) -> None:
    """Two guests share a small embedded host: puts, gets, evictions and statistics."""
    console = Console()
    host = tmem.Host(capacity=capacity)
    console.print(f"[bold]embedded host[/] of {format_size(capacity)}")
    guests = {name: host.connect(name, weight=w) for name, w in (("vm1", 1), ("vm2", 3))}
    pools = {}
    for name, client in guests.items():
        pools[name] = (client.new_pool(), client.new_pool(persistent=True))
    for step in range(pages):
        for name, client in guests.items():
            eph, pers = pools[name]
            client.put_page(eph, 1, step, _page(name, step))
            if step % 8 == 0:
                client.put_page(pers, 2, step, _page(name, step))
    table = Table(title="after the puts: ephemeral pages back, by guest")
    for col in ("guest", "weight", "cache hits", "misses", "swap pages intact"):
        table.add_column(col, justify="right")
    for name, client in guests.items():
        eph, pers = pools[name]
        hits = sum(client.get_page(eph, 1, i) is not None for i in range(pages))
        intact = all(client.get_page(pers, 2, i) == _page(name, i) for i in range(0, pages, 8))
        weight = host.stats()["clients"][name]["weight"]
        table.add_row(name, str(weight), str(hits), str(pages - hits), str(intact))
    console.print(table)
    _print_stats(console, host.stats())


def _page(guest: str, step: int) -> bytes:
    """A 4 KiB page that compresses about 2:1, like much of a program's memory."""
    noise = random.Random(f"{guest}/{step}").randbytes(2048)
    return f"{guest} page {step} ".encode().ljust(2048, b".") + noise


def _print_stats(console: Console, stats: dict) -> None:
    table = Table(title="host statistics")
    table.add_column("counter")
    table.add_column("host", justify="right")
    names = list(stats["clients"])
    for name in names:
        table.add_column(name, justify="right")
    for key in ("puts", "succ_puts", "failed_puts", "gets", "succ_gets", "evictions", "pages"):
        row = [str(stats["clients"][n][key]) for n in names]
        table.add_row(key, str(stats[key]), *row)
    row = [format_size(stats["clients"][n]["bytes"]) for n in names]
    table.add_row(
        "bytes", f"{format_size(stats['bytes'])} of {format_size(stats['capacity'])}", *row
    )
    console.print(table)
    console.print(
        f"compression ratio {stats['compression_ratio']:.2f}, "
        f"dedup ratio {stats['dedup_ratio']:.2f}"
    )


main.add_command(serve)
main.add_command(bench)
main.add_command(mount_command)
for _command in CONTROL_COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()

"""``tmem bench workload``: real traces replayed by many guests sharing one embedded host."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import tmem
from tmem.errors import TmemError
from tmem.units import format_size, parse_size
from tmem.workload.config import (
    CONFIG_NAMES,
    SCENARIOS,
    SWAP_CACHE_MODES,
    GuestSpec,
    WorkloadSpec,
)
from tmem.workload.mixes import DEFAULT_MIX, MIXES, mix
from tmem.workload.report import print_report, summarize
from tmem.workload.runner import run_workload

#: The embedded default: five guests of different appetites that start at
#: different times; one replays a production VM's block trace with writes, and
#: two replay different stretches of one trace (clones of one image).
DEFAULT_GUESTS = MIXES[DEFAULT_MIX].guests
DEFAULT_PRIVATE_PAGES = MIXES[DEFAULT_MIX].private_pages
DEFAULT_SPARE = MIXES[DEFAULT_MIX].spare


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except TmemError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def bench() -> None:
    """Benchmarks of tmem on this machine."""


@bench.command()
@click.option(
    "--mix",
    "mix_name",
    type=click.Choice(list(MIXES)),
    default=DEFAULT_MIX,
    show_default=True,
    help="A shipped mix of guests with its sizes (docs/workload.md); --guest, -m and -t "
    "override its parts.",
)
@click.option(
    "--guest",
    "guests",
    multiple=True,
    metavar="TRACE[:START[:COUNT]][@DELAY]",
    help="A guest replaying COUNT requests of TRACE from request START (a shipped "
    "trace's name or a file), starting once the others made DELAY page accesses each; "
    "repeat for more guests.  [default: the mix's guests]",
)
@click.option(
    "--private-pages",
    "-m",
    type=int,
    help=f"Private page-cache pages of each guest (M).  [default: the mix's, "
    f"{DEFAULT_PRIVATE_PAGES} for {DEFAULT_MIX}]",
)
@click.option(
    "--spare",
    "-t",
    help="Spare memory of all guests together (T): the host's capacity, or split "
    f"evenly by 'static'.  [default: the mix's, {DEFAULT_SPARE} for {DEFAULT_MIX}]",
)
@click.option(
    "--scenario",
    type=click.Choice([*SCENARIOS, "both"]),
    default="both",
    show_default=True,
    help="Cleancache (file pages), frontswap (anonymous pages), or both.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    type=click.Choice(CONFIG_NAMES),
    help="Run only these configurations (repeatable).  [default: all]",
)
@click.option(
    "--selfshrink/--no-selfshrink",
    default=True,
    show_default=True,
    help="Frontswap's self-shrinking, in the frontswap scenario.",
)
@click.option(
    "--swap-cache",
    type=click.Choice(SWAP_CACHE_MODES),
    default="offer",
    show_default=True,
    help="In the frontswap scenario, what happens to a page read back from the swap file: "
    "it keeps its copy there and is offered to tmem when evicted clean (offer: tmem as "
    "the swap cache's victim cache), keeps it and is dropped clean (keep: Linux while "
    "swap is not full), or frees it and is stored again (drop: Linux once swap is over "
    "half full).",
)
@click.option(
    "--processes",
    is_flag=True,
    help="Run each guest as a process, a client of a tmem daemon on a Unix socket "
    "(default: threads on an embedded host).",
)
@click.option(
    "--step",
    type=int,
    default=512,
    show_default=True,
    help="Page accesses each guest makes between samples.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--plots",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write PNG plots into this directory.",
)
@click.option(
    "--traces",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of the shipped traces.  [default: the traces shipped in the package]",
)
def workload(
    mix_name: str,
    guests: tuple[str, ...],
    private_pages: int | None,
    spare: str | None,
    scenario: str,
    configs: tuple[str, ...],
    selfshrink: bool,
    swap_cache: str,
    processes: bool,
    step: int,
    as_json: bool,
    plots: Path | None,
    traces: Path | None,
) -> None:
    """Guests replay real traces through cleancache and frontswap on one embedded host.

    Each guest is a thread and a tmem client with its own private page cache
    and its own real file on disk; the configurations compared all have the
    same total memory.  Prints a table per configuration and an overview.
    """
    err = Console(stderr=True)
    scenarios = SCENARIOS if scenario == "both" else (scenario,)
    chosen = mix(mix_name)
    guests = guests or chosen.guests
    private_pages = chosen.private_pages if private_pages is None else private_pages
    spare = chosen.spare if spare is None else spare
    options: dict[str, Any] = dict(
        private_pages=private_pages,
        step_pages=step,
        selfshrink=selfshrink,
        swap_cache=swap_cache,
        processes=processes,
        configurations=configs,
    )
    try:
        guest_specs = tuple(GuestSpec.parse(g) for g in guests)
        spare_bytes = _size(spare)
        specs = [
            WorkloadSpec(guest_specs, spare_bytes=spare_bytes, scenario=name, **options)
            for name in scenarios
        ]
        if plots:
            from tmem.workload.plots import check_plots

            check_plots()  # before the run, not after it
        run = run_metadata(
            mix=mix_name if guests == chosen.guests else None,
            guests=list(guests),
            spare=spare,
            spare_bytes=spare_bytes,
            scenario=scenario,
            traces=str(traces) if traces else None,
            plots=str(plots) if plots else None,
            **options,
        )
        summaries = {spec.scenario: {**_run(spec, traces, err), "run": run} for spec in specs}
        written = _plots(summaries, plots) if plots else []
    except TmemError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summaries, indent=1))
    else:
        _print(specs, summaries)
    for path in written:
        err.print(f"wrote {path}")


def run_metadata(**options: Any) -> dict[str, Any]:
    """Every option of the run, with the versions of tmem and Python, for ``--json``."""
    return {
        "tmem_version": tmem.__version__,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
    }


def _print(specs: list[WorkloadSpec], summaries: dict[str, dict[str, Any]]) -> None:
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 120)
    for spec in specs:
        out.print(
            f"\n[bold]{spec.scenario}[/]: {len(spec.guests)} guests, "
            f"{spec.private_pages} private pages each, "
            f"{format_size(spec.spare_bytes)} spare"
        )
        print_report(summaries[spec.scenario], out)


def _run(spec: WorkloadSpec, traces: Path | None, err: Console) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(config: str, done: int, total: int) -> None:
            if config not in tasks:
                tasks[config] = bar.add_task(f"{spec.scenario} {config}", total=total)
            bar.update(tasks[config], completed=done, total=total)

        return summarize(run_workload(spec, traces, progress=progress))


def _plots(summaries: dict[str, dict[str, Any]], directory: Path) -> list[Path]:
    from tmem.workload.plots import write_plots

    written: list[Path] = []
    for scenario, summary in summaries.items():
        written += write_plots(summary, directory, prefix=f"workload-{scenario}")
    return written

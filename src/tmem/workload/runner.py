"""Run the workload: every guest a thread and a tmem client of one embedded host.

:func:`prepare` reads the traces and picks the page contents once;
:func:`run_configuration` then builds a fresh host (or none), fresh backing
or swap files, and replays all guests at once.  The guests move in steps of
about ``step_pages`` page accesses each and wait for one another at a barrier
between steps; while they all wait, the runner samples each guest's disk (or
swap) reads so far and each guest's bytes in the host, which makes the
timelines of the plots.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmem.workload.balloon import MemoryMachine
from tmem.workload.config import Configuration, WorkloadSpec
from tmem.workload.guest import Guest
from tmem.workload.model import (
    ConfigResult,
    Prepared,
    Progress,
    make_guest,
    new_host,
    not_for,
    prepare,
)
from tmem.workload.processes import run_configuration_processes


def run_configuration(
    prepared: Prepared, config: Configuration, workdir: Path, progress: Progress | None = None
) -> ConfigResult:
    """Replay every guest under ``config`` on fresh files; return the counters."""
    result = ConfigResult(config)
    result.unavailable = not_for(prepared.spec, config)
    if result.unavailable:
        return result
    host = new_host(config, result)
    if result.unavailable:
        return result
    guests: list[Guest] = []
    started = time.perf_counter()
    try:
        for i in range(len(prepared.layouts)):
            client = host.connect(f"guest{i}") if host is not None else None
            guests.append(make_guest(prepared, config, client, i, workdir))
        machine = MemoryMachine(prepared.spec, config, guests, host)
        _run_in_step(prepared, config, guests, host, result, progress, machine.step)
        result.close([guest.finish() for guest in guests], time.perf_counter() - started)
        result.memory = machine.summary()
        guests = []
    finally:
        for guest in guests:
            _quietly_close(guest)
        if host is not None:
            host.close()  # stops demotion and releases its tiers, if any
        for path in workdir.glob(f"{config.name}-*"):
            path.unlink()
    return result


def _run_in_step(
    prepared: Prepared,
    config: Configuration,
    guests: list[Guest],
    host: Any,
    result: ConfigResult,
    progress: Progress | None,
    between: Callable[[], None] | None = None,
) -> None:
    """One thread per guest; all wait at a barrier after each step while one samples
    (after calling ``between``, which may resize the guests' caches and the host)."""
    budget, expected = prepared.spec.step_pages, prepared.steps
    errors: list[BaseException] = []
    finished = threading.Event()

    def sample() -> None:
        try:
            if between is not None:
                between()
            stats = host.stats() if host is not None else None
            result.sample(budget, [g.io_so_far() for g in guests], stats)
            if progress is not None:
                progress(config.name, len(result.steps), max(expected, len(result.steps)))
            if all(g.done for g in guests):
                finished.set()
        except BaseException as exc:
            errors.append(exc)
            raise

    barrier = threading.Barrier(len(guests), action=sample)

    def replay(guest: Guest, delay: int) -> None:
        try:
            while not finished.is_set():
                # Only the barrier's action appends to result.steps, while every guest waits.
                if not guest.done and len(result.steps) * budget >= delay:
                    guest.step(budget)
                    if guest.done:
                        guest.finish()
                barrier.wait()
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    delays = [g.delay for g in prepared.spec.guests]
    targets = [(replay, (g, d), g.name) for g, d in zip(guests, delays, strict=True)]
    _run_threads(targets, barrier)
    if errors:
        raise errors[0]


def _run_threads(targets: list[tuple[Any, tuple[Any, ...], str]], barrier: Any) -> None:
    """Start and join the threads; if this thread is interrupted, break the barrier so
    that they stop at their next step."""
    threads = [threading.Thread(target=fn, args=args, name=name) for fn, args, name in targets]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        barrier.abort()
        raise


def _quietly_close(guest: Guest) -> None:
    # Already failing: the first error is the one reported.
    with contextlib.suppress(Exception):
        guest.finish()


@dataclass
class WorkloadResult:
    """Every configuration's result for one spec, with the description of the guests."""

    spec: WorkloadSpec
    description: dict[str, Any]
    results: list[ConfigResult]
    ideal: dict[str, list[int]] = field(default_factory=dict)  # arrangement -> reads per guest


def run_workload(
    spec: WorkloadSpec,
    traces_directory: Path | None = None,
    progress: Progress | None = None,
    ideal: dict[str, list[int]] | None = None,
) -> WorkloadResult:
    """Prepare once, then run each chosen configuration in turn in a temporary directory.

    ``ideal`` is the simulation of an earlier run of the same guests and sizes
    (it depends on nothing else); without it, it is simulated here.
    """
    prepared = prepare(spec, traces_directory)
    if ideal is None:
        ideal = prepared.simulate_ideal()
    run = run_configuration_processes if spec.processes else run_configuration
    try:
        with tempfile.TemporaryDirectory(prefix="tmem-workload-") as tmp:
            results = [run(prepared, config, Path(tmp), progress) for config in spec.chosen()]
    finally:
        prepared.content.corpus.close()
    return WorkloadResult(spec, prepared.describe(), results, ideal)

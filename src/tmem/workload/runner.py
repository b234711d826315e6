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

import tmem
from tmem.errors import TmemError
from tmem.workload.balloon import MemoryMachine
from tmem.workload.config import Configuration, WorkloadSpec
from tmem.workload.content import ContentMap, manifest
from tmem.workload.guest import CacheGuest, Guest, GuestPages, SwapGuest
from tmem.workload.ideal import GuestRefs, simulate_all
from tmem.workload.traces import load_trace

#: Called after each step of a configuration with (configuration, steps done, steps expected).
Progress = Callable[[str, int, int], None]


@dataclass
class Prepared:
    """The guests' trace slices, laid out on dense files, and their page contents."""

    spec: WorkloadSpec
    layouts: list[GuestPages]
    content: ContentMap

    @property
    def steps(self) -> int:
        """Steps the longest guest needs (an upper bound: a step may overshoot its budget)."""
        step = self.spec.step_pages
        return max(
            -(-guest.delay // step) + -(-layout.trace.page_accesses // step)
            for guest, layout in zip(self.spec.guests, self.layouts, strict=True)
        )

    def describe(self) -> dict[str, Any]:
        """The guests and the content corpus, for reports."""
        corpus = self.content.corpus
        return {
            "guests": [
                {
                    "guest": f"guest{i}",
                    "spec": str(g),
                    "requests": len(layout.trace),
                    "page_accesses": layout.trace.page_accesses,
                    "pages": len(layout.pages),
                    "writes": sum(layout.trace.writes),
                }
                for i, (g, layout) in enumerate(zip(self.spec.guests, self.layouts, strict=True))
            ],
            "corpus": {
                "pages": corpus.pages,
                "sha256": manifest()["sha256"],
                "describe": corpus.describe(),
            },
        }

    def simulate_ideal(self) -> dict[str, list[int]]:
        """Each guest's reads under the simulated arrangements of :mod:`tmem.workload.ideal`."""
        spec = self.spec
        refs = [
            GuestRefs(layout.starts, layout.trace.counts, layout.trace.writes, guest.delay)
            for guest, layout in zip(spec.guests, self.layouts, strict=True)
        ]
        spare_pages = spec.spare_bytes // spec.page_size
        return simulate_all(refs, spec.scenario, spec.private_pages, spare_pages, spec.step_pages)


def prepare(spec: WorkloadSpec, traces_directory: Path | None = None) -> Prepared:
    """Read each guest's trace slice and choose real contents for every page they touch."""
    full: dict[str, Any] = {}
    layouts = []
    for guest in spec.guests:
        if guest.trace not in full:
            full[guest.trace] = load_trace(guest.trace, traces_directory)
        layouts.append(GuestPages.of(full[guest.trace].slice(guest.start, guest.count)))
    pages: dict[str, set[int]] = {}
    for layout in layouts:
        pages.setdefault(layout.trace.name, set()).update(layout.pages)
    content = ContentMap.build(pages, page_size=spec.page_size)
    return Prepared(spec, layouts, content)


@dataclass
class ConfigResult:
    """Counters of one configuration: per guest, the host at the end, and the timelines."""

    config: Configuration
    guests: list[dict[str, int]] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)  # page accesses per guest at each sample
    io: list[list[int]] = field(default_factory=list)  # per sample: each guest's reads so far
    host_bytes: list[list[int]] = field(default_factory=list)  # per sample: each guest's bytes
    ratios: list[tuple[float, float]] = field(default_factory=list)  # (compression, dedup)
    seconds: float = 0.0
    unavailable: str | None = None
    memory: dict[str, Any] = field(default_factory=dict)  # MemoryMachine.summary()

    def sample(self, budget: int, io: list[int], stats: dict[str, Any] | None) -> None:
        """Record one sample: each guest's reads so far and the host's ``stats`` (or None)."""
        self.steps.append(len(self.steps) * budget + budget)
        self.io.append(io)
        clients = (stats or {}).get("clients", {})
        names = [f"guest{i}" for i in range(len(io))]
        self.host_bytes.append([clients.get(name, {}).get("bytes", 0) for name in names])
        if stats and stats.get("pages"):
            # Finished guests take their pages away: keep the host as it was last in use.
            self.host = host_summary(stats)
            self.ratios.append((stats["compression_ratio"], stats["dedup_ratio"]))

    def close(self, guests: list[dict[str, int]], seconds: float) -> None:
        """Take the guests' final counters; the host's ratios become means over the samples."""
        self.guests, self.seconds = guests, seconds
        if self.ratios:
            for k, key in enumerate(("compression_ratio", "dedup_ratio")):
                self.host[key] = sum(r[k] for r in self.ratios) / len(self.ratios)


def new_host(config: Configuration, result: ConfigResult) -> Any:
    """The host of ``config`` (None for no tmem); None with ``result.unavailable`` set if
    the host cannot be built."""
    if not config.uses_tmem:
        return None
    try:
        return tmem.Host(
            config.host_bytes,
            compress=config.compress,
            dedup=config.dedup,
            tiers=config.tiers,
            policy=config.policy,
        )
    except TmemError as exc:
        result.unavailable = str(exc)
        return None


def run_configuration(
    prepared: Prepared, config: Configuration, workdir: Path, progress: Progress | None = None
) -> ConfigResult:
    """Replay every guest under ``config`` on fresh files; return the counters."""
    result = ConfigResult(config)
    if config.balloon and prepared.spec.scenario != "cleancache":
        result.unavailable = "self-ballooning is for cleancache guests"
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


def make_guest(
    prepared: Prepared, config: Configuration, client: Any, i: int, workdir: Path
) -> Guest:
    """Guest ``i`` of the run under ``config``, reaching the host through ``client`` (or None)."""
    spec, name = prepared.spec, f"guest{i}"
    layout = prepared.layouts[i]
    if spec.scenario == "frontswap":
        path = workdir / f"{config.name}-{name}.swap"
        return SwapGuest(
            name,
            layout,
            prepared.content,
            path,
            client,
            config.private_pages,
            spec.page_size,
            selfshrink=spec.selfshrink,
            swap_cache=spec.swap_cache,
        )
    path = workdir / f"{config.name}-{name}.disk"
    return CacheGuest(
        name, layout, prepared.content, path, client, config.private_pages, spec.page_size
    )


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


def host_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The host's totals; the ratios are replaced by their means over the samples."""
    keys = ("capacity", "bytes", "pages", "evictions", "failed_puts", "succ_puts")
    out = {key: stats.get(key, 0) for key in keys}
    out.update({key: value for key, value in stats.items() if key.startswith("reject_")})
    store = stats.get("store", {})
    out.update({f"store_{k}": v for k, v in store.items() if k.startswith("reject_")})
    out["compression_ratio"] = stats.get("compression_ratio", 1.0)
    out["dedup_ratio"] = stats.get("dedup_ratio", 1.0)
    return out


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
) -> WorkloadResult:
    """Prepare once, then run each chosen configuration in turn in a temporary directory."""
    prepared = prepare(spec, traces_directory)
    ideal = prepared.simulate_ideal()
    run = run_configuration
    if spec.processes:
        from tmem.workload.processes import run_configuration_processes as run
    try:
        with tempfile.TemporaryDirectory(prefix="tmem-workload-") as tmp:
            results = [run(prepared, config, Path(tmp), progress) for config in spec.chosen()]
    finally:
        prepared.content.corpus.close()
    return WorkloadResult(spec, prepared.describe(), results, ideal)

"""The workload's model: prepared guests, a configuration's result, and how both are built.

Both ways of running the workload -- guests as threads of one embedded host
(:mod:`tmem.workload.runner`) and guests as processes of a daemon
(:mod:`tmem.workload.processes`) -- read the same prepared guests and fill the
same :class:`ConfigResult`; this module is what they share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tmem
from tmem.errors import TmemError
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


def not_for(spec: WorkloadSpec, config: Configuration) -> str | None:
    """Why ``config`` does not run in ``spec``'s scenario, or None if it does."""
    if spec.scenario == "cleancache":
        return None
    if config.balloon:
        return "self-ballooning is for cleancache guests"
    if config.eviction != "lru":  # it orders ephemeral pages only: the same run as tmem
        return "the host's eviction acts on ephemeral pages: cleancache only"
    return None


def new_host(config: Configuration, result: ConfigResult) -> Any:
    """The host of ``config`` (None for no tmem); None with ``result.unavailable`` set if
    the host cannot be built."""
    if config.host_bytes is None:  # no tmem
        return None
    try:
        return tmem.Host(
            config.host_bytes,
            compress=config.compress,
            dedup=config.dedup,
            tiers=config.tiers,
            policy=config.policy,
            order=config.order,
            eviction=config.eviction,
        )
    except TmemError as exc:
        result.unavailable = str(exc)
        return None


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
            order=config.order,  # tmem-lru: LRU in the host and in frontswap's writeback
            eviction=config.writeback,
        )
    path = workdir / f"{config.name}-{name}.disk"
    return CacheGuest(
        name, layout, prepared.content, path, client, config.private_pages, spec.page_size
    )


def host_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The host's totals; the ratios are replaced by their means over the samples."""
    keys = ("capacity", "bytes", "pages", "evictions", "failed_puts", "succ_puts")
    out = {key: stats.get(key, 0) for key in keys}
    out.update({key: value for key, value in stats.items() if key.startswith("reject_")})
    store = stats.get("store", {})
    out.update({f"store_{k}": v for k, v in store.items() if k.startswith("reject_")})
    out["compression_ratio"] = stats.get("compression_ratio", 1.0)
    out["dedup_ratio"] = stats.get("dedup_ratio", 1.0)
    tiering = stats.get("tiering") or {}
    if stats.get("tiers"):  # a host with tiers below RAM
        out.update({key: tiering.get(key, 0) for key in ("demotions", "tier_hits")})
    return out

"""Prometheus metrics of a host, with ``prometheus-client`` (``tmem serve --metrics``).

Each scrape reads the host's statistics once (:meth:`tmem.Host.stats`) and
turns them into metric families; nothing is kept between scrapes but the
request latency buckets the daemon fills.  Names are listed in
``docs/operations.md``; they follow the contract's counter names.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from tmem.api import REJECT_REASONS

#: Upper bounds (seconds) of the request latency buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
)  # fmt: skip
#: contract counter -> metric name stem, per client and per pool
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("puts", "puts", "puts tried"),
    ("gets", "gets", "gets tried"),
    ("succ_gets", "hits", "gets that found their page"),
    ("flushes", "flushes", "page flushes"),
    ("evictions", "evictions", "pages evicted"),
)


class LatencyRecorder:
    """Per-op request latency buckets, filled by the daemon's loop, read by scrapes."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names  # op code -> name shown in the ``op`` label
        self._counts: dict[int, list[int]] = {}
        self._sums: dict[int, float] = {}
        self._lock = threading.Lock()  # a scrape must not see a half-added sample

    def observe(self, op: int, seconds: float) -> None:
        """Count one request of ``op`` that took ``seconds``."""
        with self._lock:
            counts = self._counts.get(op)
            if counts is None:
                counts = self._counts[op] = [0] * (len(LATENCY_BUCKETS) + 1)
                self._sums[op] = 0.0
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._sums[op] += seconds

    def timed(self, dispatch: Callable[..., Any]) -> Callable[..., Any]:
        """``dispatch`` (session, op, tag, body, out), timed into this recorder.  A batch
        it returns (executed a slice at a time afterwards) gets the time so far in
        ``spent``; whoever executes it observes the whole once it is done."""
        clock, observe = time.perf_counter, self.observe

        def timed_dispatch(session: Any, op: int, tag: int, body: Any, out: Any) -> Any:
            start = clock()
            batch = None
            try:
                batch = dispatch(session, op, tag, body, out)
            finally:
                if batch is None:
                    observe(op, clock() - start)
                else:
                    batch.spent = clock() - start
            return batch

        return timed_dispatch

    def family(self) -> HistogramMetricFamily:
        """The ``tmem_request_duration_seconds`` histogram, by op."""
        family = HistogramMetricFamily(
            "tmem_request_duration_seconds",
            "Time the daemon spent executing a request, by op",
            labels=["op"],
        )
        with self._lock:
            snapshot = {op: (list(c), self._sums[op]) for op, c in self._counts.items()}
        for op, (counts, total) in sorted(snapshot.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([self.names.get(op, str(op))], buckets, total)
        return family


class HostCollector(Collector):
    """Turns ``stats()`` (host statistics, with the daemon's under ``"daemon"``) into metrics."""

    def __init__(
        self, stats: Callable[[], dict[str, Any]], latency: LatencyRecorder | None = None
    ) -> None:
        self.stats = stats
        self.latency = latency

    def collect(self) -> Iterator[Any]:
        """One scrape: every family, from one reading of the statistics."""
        stats = self.stats()
        yield from host_families(stats)
        yield from tier_families(stats)
        yield from client_families(stats["clients"])
        yield from client_tier_families(stats["clients"])
        yield from pool_families(stats["clients"])
        if self.latency is not None:
            yield self.latency.family()


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def host_families(stats: dict[str, Any]) -> Iterator[Any]:
    """Host-wide gauges and counters (totals include clients that left)."""
    daemon = stats.get("daemon", {})
    yield _gauge("tmem_capacity_bytes", "Bytes the host may spend on pages", stats["capacity"])
    yield _gauge("tmem_used_bytes", "Bytes the host holds for pages", stats["bytes"])
    yield _gauge("tmem_pages", "Pages stored", stats["pages"])
    yield _gauge("tmem_compression_ratio", "Page bytes per stored byte", stats["compression_ratio"])
    yield _gauge("tmem_dedup_ratio", "Pages per distinct stored page", stats["dedup_ratio"])
    yield _gauge("tmem_clients", "Clients connected", len(stats["clients"]))
    if daemon:
        yield _gauge("tmem_connections", "Open connections", daemon["connections"])
        yield _gauge("tmem_uptime_seconds", "Seconds since the daemon started", daemon["uptime"])
    if "fetches" in daemon:  # gets of pages below RAM, loaded by worker threads
        yield CounterMetricFamily(
            "tmem_daemon_fetches", "Tier loads handed to the fetch workers", value=daemon["fetches"]
        )
        yield _gauge(
            "tmem_daemon_fetches_in_flight", "Tier loads under way", daemon["fetches_in_flight"]
        )
        yield _gauge("tmem_daemon_fetch_workers", "Fetch worker threads", daemon["fetch_workers"])
    for key, stem, doc in COUNTERS:
        yield CounterMetricFamily(f"tmem_{stem}", f"Host total of {doc}", value=stats[key])
    refused = CounterMetricFamily("tmem_refused", "Puts refused, by reason", labels=["reason"])
    for reason in REJECT_REASONS:
        refused.add_metric([reason], stats.get("reject_" + reason, 0))
    yield refused


#: host-wide tier counter (``stats()["tiering"]``) -> metric name stem, meaning
TIER_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("demotions", "demotions", "pages moved from RAM down to a tier"),
    ("promotions", "promotions", "pages brought back from a tier to RAM"),
    ("tier_hits", "tier_hits", "gets served from a tier"),
    ("tier_lost", "tier_lost", "gets of pages a tier no longer held"),
    ("tier_failures", "tier_failures", "gets a tier could not answer in time"),
    ("tier_dropped", "tier_dropped", "ephemeral pages a tier dropped on its own"),
    ("demotions_refused", "demotions_refused", "pages a tier refused to take"),
    ("demotions_stale", "demotions_stale", "pages changed while being written to a tier"),
)
#: per-client tier figure -> metric name, meaning, whether a counter (else a gauge)
CLIENT_TIER: tuple[tuple[str, str, str, bool], ...] = (
    ("tier_pages", "tmem_client_tier_pages", "Pages of a client that tiers below RAM hold", False),
    ("tier_bytes", "tmem_client_tier_bytes", "Bytes of a client that tiers below RAM hold", False),
    ("demotions", "tmem_client_demotions", "A client's pages moved down to a tier", True),
    ("promotions", "tmem_client_promotions", "A client's pages brought back to RAM", True),
    ("tier_failures", "tmem_client_tier_failures", "A client's gets a tier failed", True),
)


def tier_families(stats: dict[str, Any]) -> Iterator[Any]:
    """Tiers below RAM: host-wide counters, and pages, bytes, health, fetches and fetch
    latency per tier (label ``tier``: its place, ``kind``: ``ssd`` or ``redis``)."""
    tiering = stats.get("tiering") or {}
    for key, stem, doc in TIER_COUNTERS:
        yield CounterMetricFamily(f"tmem_{stem}", f"Host total of {doc}", value=tiering.get(key, 0))
    labels = ["tier", "kind"]
    gauges = {
        "host_pages": GaugeMetricFamily("tmem_tier_pages", "Pages a tier holds", labels=labels),
        "host_bytes": GaugeMetricFamily(
            "tmem_tier_bytes", "Bytes (as stored) a tier holds", labels=labels
        ),
    }
    healthy = GaugeMetricFamily("tmem_tier_healthy", "1 if a tier takes pages", labels=labels)
    counters = {
        "fetches": CounterMetricFamily("tmem_tier_fetches", "Gets read from a tier", labels=labels),
        "load_failures": CounterMetricFamily(
            "tmem_tier_load_failures", "Loads a tier failed", labels=labels
        ),
        "bytes_written": CounterMetricFamily(
            "tmem_tier_written_bytes", "Bytes written to a tier (SSD wear)", labels=labels
        ),
    }
    latency = GaugeMetricFamily(
        "tmem_tier_fetch_seconds",
        "Latency of a tier's recent fetches (the last 4096), by quantile",
        labels=[*labels, "quantile"],
    )
    for place, tier in enumerate(stats.get("tiers") or ()):
        values = [str(place), tier["tier"]]
        for key, family in gauges.items():
            family.add_metric(values, tier[key])
        healthy.add_metric(values, 1.0 if tier["healthy"] else 0.0)
        for key, counter in counters.items():
            counter.add_metric(values, tier.get(key, 0))
        for quantile, key in (("0.5", "fetch_p50_us"), ("0.99", "fetch_p99_us")):
            if tier.get(key) is not None:
                latency.add_metric([*values, quantile], tier[key] / 1e6)
    yield from gauges.values()
    yield healthy
    yield from counters.values()
    yield latency


def client_tier_families(clients: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """Per-client figures of the tiers below RAM."""
    families = [
        (key, (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=["client"]))
        for key, name, doc, counter in CLIENT_TIER
    ]
    for name, client in sorted(clients.items()):
        for key, family in families:
            family.add_metric([name], client.get(key, 0))
    yield from (family for _, family in families)


def client_families(clients: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """Per-client gauges, counters and policy."""
    label = ["client"]
    gauges = {
        "pages": GaugeMetricFamily("tmem_client_pages", "Pages a client holds", labels=label),
        "bytes": GaugeMetricFamily("tmem_client_bytes", "Bytes charged to a client", labels=label),
        "weight": GaugeMetricFamily("tmem_client_weight", "A client's weight", labels=label),
        "frozen": GaugeMetricFamily("tmem_client_frozen", "1 if frozen", labels=label),
    }
    cap = GaugeMetricFamily("tmem_client_cap_bytes", "A client's cap (absent: none)", labels=label)
    counters = [
        (key, CounterMetricFamily(f"tmem_client_{stem}", f"A client's {doc}", labels=label))
        for key, stem, doc in COUNTERS
    ]
    refused = CounterMetricFamily(
        "tmem_client_refused", "A client's refused puts, by reason", labels=["client", "reason"]
    )
    for name, client in sorted(clients.items()):
        for key, family in gauges.items():
            family.add_metric([name], float(client[key]))
        if client["cap"] is not None:
            cap.add_metric([name], client["cap"])
        for key, counter in counters:
            counter.add_metric([name], client[key])
        for reason in REJECT_REASONS:
            refused.add_metric([name, reason], client.get("reject_" + reason, 0))
    yield from gauges.values()
    yield cap
    yield from (family for _, family in counters)
    yield refused


def pool_families(clients: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """Per-pool gauges and counters, labelled by client, pool id and kind."""
    labels = ["client", "pool", "kind"]
    pages = GaugeMetricFamily("tmem_pool_pages", "Pages in a pool", labels=labels)
    size = GaugeMetricFamily("tmem_pool_bytes", "Bytes charged for a pool", labels=labels)
    counters = [
        (key, CounterMetricFamily(f"tmem_pool_{stem}", f"A pool's {doc}", labels=labels))
        for key, stem, doc in COUNTERS
    ]
    refused = CounterMetricFamily("tmem_pool_refused", "A pool's refused puts", labels=labels)
    for name, client in sorted(clients.items()):
        for pool_id, pool in sorted(client["pools"].items(), key=lambda kv: int(kv[0])):
            values = [name, str(pool_id), "persistent" if pool["persistent"] else "ephemeral"]
            pages.add_metric(values, pool["pages"])
            size.add_metric(values, pool["bytes"])
            for key, family in counters:
                family.add_metric(values, pool[key])
            refused.add_metric(values, pool["failed_puts"])
    yield pages
    yield size
    yield from (family for _, family in counters)
    yield refused


def serve_metrics(
    address: tuple[str, int], collector: HostCollector
) -> tuple[Any, threading.Thread]:
    """Serve ``collector`` over HTTP at ``address``; ``(server, thread)``: ``server.shutdown()``
    stops it."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    host, port = address
    return start_http_server(port, addr=host, registry=registry)

"""Where the CPU in tmem per disk I/O saved goes, in the workload's main job.

Runs the default cleancache workload (``tmem bench workload``'s guests) for
``private`` and the chosen tmem configurations, with the compressed store's
codec calls timed in CPU time of the calling thread (and its compaction, which
the store times itself when asked, ``compaction_ns``, in either build), and
prints per disk I/O saved against ``private``: all CPU in tmem calls, and of
it compression (split into pages that were then stored and pages compressed
only to be refused as compressing poorly), decompression and compaction; the
rest is the engine, the store's bookkeeping, the lock and the call itself.
Also the calls per I/O saved (puts, gets) and an uncached 4 KiB disk read
measured in the same run.  The codec timers add about 0.2 µs per timed call.
The workload's own timer of each tmem call reads the thread's CPU clock on
both sides, a system call here, and counts part of that in "all"; the same
timer around a call that does nothing is measured in the same run ("timer",
per call, times the calls per I/O saved), and "tmem" is "all" less it.
"gc" is the part of "tmem" spent in the interpreter's garbage collections
that ran inside a tmem call (the guests' objects are collected too; about
0.05 µs per call).  The guests' own work is never inside the timed span;
it only leaves the caches colder for tmem, as an application would:
``bench/saved_io_instructions.py --timed`` replays the same calls alone for
the warm-cache figure.

    python bench/tmem_cpu.py [--config tmem --config tmem-lz4 ...] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload import direct_read_us  # noqa: E402

import tmem
from tmem.units import parse_size
from tmem.workload import runner
from tmem.workload.cli import DEFAULT_GUESTS, DEFAULT_PRIVATE_PAGES, DEFAULT_SPARE
from tmem.workload.config import GuestSpec, WorkloadSpec
from tmem.workload.guest import TimedClient
from tmem.workload.report import summarize
from tmem.workload.runner import run_workload

clock = time.thread_time_ns
SPENT: dict[str, int] = {}
CALLS: dict[str, int] = {}
#: a compressed page above this fraction of its size is refused (the store's default)
POOR = 0.75


def _add(key: str, ns: int) -> None:
    SPENT[key] = SPENT.get(key, 0) + ns
    CALLS[key] = CALLS.get(key, 0) + 1


def _timed_compress(fn: Callable[..., bytes]) -> Callable[..., bytes]:
    def compress(page: Any, *args: Any) -> bytes:
        t0 = clock()
        out = fn(page, *args)
        poor = len(out) > POOR * len(page)
        _add("compress_refused" if poor else "compress", clock() - t0)
        return out

    return compress


def _timed_decompress(fn: Callable[..., bytes]) -> Callable[..., bytes]:
    def decompress(*args: Any) -> bytes:
        t0 = clock()
        out = fn(*args)
        _add("decompress", clock() - t0)
        return out

    return decompress


#: the hosts the workload built since the last :func:`_instrument` (their stores' counters)
HOSTS: list[Any] = []


_INSIDE = threading.local()  # .on: this thread is inside a timed tmem call
_GC_START: dict[int, int] = {}


def _gc_timer(phase: str, info: dict[str, Any]) -> None:
    """Count a collection's CPU time under "gc" if it ran inside a tmem call."""
    thread = threading.get_ident()
    if phase == "start":
        _GC_START[thread] = clock()
    elif thread in _GC_START:
        spent = clock() - _GC_START.pop(thread)
        if getattr(_INSIDE, "on", False):
            _add("gc", spent)


def _mark_calls() -> None:
    """Flag the tmem calls the workload times (outside its clock reads), for _gc_timer."""
    timed = TimedClient._timed

    def flagged(self: TimedClient, call: Any, *args: Any, **kwargs: Any) -> Any:
        _INSIDE.on = True
        try:
            return timed(self, call, *args, **kwargs)
        finally:
            _INSIDE.on = False

    TimedClient._timed = flagged  # type: ignore[method-assign]
    gc.callbacks.append(_gc_timer)


def _instrument() -> None:
    """Wrap every host's codec calls with CPU timers as the workload builds it.

    The codecs are wrapped in the store's own table of codec functions
    (``store.codecs``), which the compiled store calls as the pure one does, so
    both builds and every codec implementation are timed alike.  Compaction
    times itself once asked (the pool's ``time_compaction`` and ``compaction_ns``,
    in CPU time of the thread too).
    """
    new_host = runner.new_host

    def host_of(config: Any, result: Any) -> Any:
        host = new_host(config, result)
        if host is None:  # a configuration without tmem
            return host
        codecs = getattr(host.store, "codecs", None)
        if codecs is not None:
            host.store.pool.time_compaction = True
            for table, wrap in ((codecs.compress, _timed_compress),
                                (codecs.decompress, _timed_decompress)):  # fmt: skip
                for codec, fn in list(table.items()):
                    table[codec] = wrap(fn)
        HOSTS.append(host)
        return host

    runner.new_host = host_of  # type: ignore[assignment]


def _compaction_ns() -> int:
    """CPU ns the stores of :data:`HOSTS` spent compacting."""
    return sum(int(h.store.stats().get("compaction_ns", 0)) for h in HOSTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", dest="configs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configs = args.configs or ["tmem", "tmem-lz4", "tmem-zstd"]
    _instrument()
    _mark_calls()
    disk_us = direct_read_us()
    timer = timer_us()
    load = [os.getloadavg()[0]]
    guests = tuple(GuestSpec.parse(g) for g in DEFAULT_GUESTS)
    rows: dict[str, dict[str, Any]] = {}
    for name in ["private", *configs]:  # one configuration per run: its own timers
        SPENT.clear()
        CALLS.clear()
        HOSTS.clear()
        spec = WorkloadSpec(
            guests=guests,
            private_pages=DEFAULT_PRIVATE_PAGES,
            spare_bytes=parse_size(DEFAULT_SPARE),
            scenario="cleancache",
            configurations=(name,),
        )
        result = run_workload(spec)
        compacted = _compaction_ns()
        if compacted:
            SPENT["compaction"], CALLS["compaction"] = compacted, 0
        rows[name] = {"result": result, "spent": dict(SPENT), "calls": dict(CALLS)}
    load.append(os.getloadavg()[0])
    private = _total(rows["private"]["result"])
    out: dict[str, Any] = {
        "disk_read_us": disk_us, "timer_us_per_call": timer, "load": load,
        "compiled": tmem.compiled(), "configs": {},
    }  # fmt: skip
    for name in configs:
        mine = _total(rows[name]["result"])
        out["configs"][name] = figures(mine, private, rows[name], timer)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"uncached 4 KiB disk read: {disk_us:.1f} µs; the call timer: {timer:.2f} µs per call;"
        f" load {load[0]:.1f} -> {load[1]:.1f}; {'compiled' if out['compiled'] else 'pure Python'}"
    )
    cols = ("all", "timer", "tmem", "compress", "compress_refused", "decompress", "compaction",
            "gc", "rest")  # fmt: skip
    print(f"{'config':10} {'saved':>7} {'puts':>6} {'calls':>6} "
          + " ".join(f"{c:>16}" for c in cols))  # fmt: skip
    for name, row in out["configs"].items():
        print(
            f"{name:10} {row['saved_io']:7d} {row['puts_per_saved']:6.2f}"
            f" {row['calls_per_saved']:6.2f} "
            + " ".join(f"{row['us_per_saved'][c]:16.2f}" for c in cols)
        )
    print(
        "(µs of CPU per disk I/O saved against 'private'; timer: the call timer's own;"
        " tmem: all less timer; puts, calls: per I/O saved)"
    )


def timer_us(calls: int = 20_000, runs: int = 5) -> float:
    """µs the workload's call timer counts per call around a call that does nothing
    (median of ``runs``)."""

    class Idle:
        def put_page(self, *args: Any) -> bool:
            return True

    timed = TimedClient(Idle())  # type: ignore[arg-type]
    figures = []
    for _ in range(runs):
        spent, done = timed.cpu_ns, timed.calls
        for i in range(calls):
            timed.put_page(0, 0, i, b"")
        figures.append((timed.cpu_ns - spent) / (timed.calls - done) / 1000)
    return statistics.median(figures)


def figures(
    mine: dict[str, Any], base: dict[str, Any], row: dict[str, Any], timer: float
) -> dict[str, Any]:
    """Per I/O saved: the CPU in tmem and its parts; calls per I/O saved.

    ``timer`` is what the call timer counts per call by itself (:func:`timer_us`).
    """
    saved = base["disk_reads"] + base["disk_writes"] - mine["disk_reads"] - mine["disk_writes"]
    host = row["result"].results[0].host
    spent = {k: v / 1000 / saved for k, v in row["spent"].items()}
    parts = {k: spent.get(k, 0.0) for k in ("compress", "compress_refused", "decompress",
                                             "compaction", "gc")}  # fmt: skip
    total = mine["tmem_cpu_ns"] / 1000 / saved
    clock = timer * mine["tmem_calls"] / saved
    return {
        "saved_io": saved,
        "puts_per_saved": (host.get("succ_puts", 0) + host.get("failed_puts", 0)) / saved,
        "calls_per_saved": mine["tmem_calls"] / saved,
        "calls": row["calls"],
        "us_per_saved": {
            "all": total, "timer": clock, "tmem": total - clock, **parts,
            "rest": total - clock - sum(parts.values()),
        },
    }  # fmt: skip


def _total(result: Any) -> dict[str, Any]:
    """The all-guests row of a run of one configuration."""
    return summarize(result)["configurations"][0]["total"]


if __name__ == "__main__":
    main()

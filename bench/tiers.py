"""Tiers below RAM: what a get costs wherever the page is, how fast pages go down, and
what a host with a quarter of its RAM and tiers for the rest still saves.

1. **Get latency**, p50 and p99 in µs, of a 4 KiB page (half random, half
   zeros: about 2:1 with lz4) that is in RAM raw, in RAM compressed (lz4), on
   the SSD tier, and on a Redis Cluster (three primaries, one replica each, on
   loopback, started here), through an embedded host; every page is read
   once per run, so each tier get is a real load (its promotion back to RAM
   is done by the host's background thread, off the get's path, and put off
   while gets keep coming: ``promoted_during_gets`` counts those it did
   meanwhile).  The reference is an uncached 4 KiB read (``O_DIRECT``) of the same pages,
   from a file on the same disk as the SSD tier written just before, in the
   same order and loop as the gets, measured in the same run.  Beside it,
   what a cluster get is measured against: a plain ``GET`` of the same (lz4)
   page from one primary with ``redis.Redis``, and the same ``GET`` written
   and read on a bare socket (no client library: the round trip's floor).
   The CPU time of the calling thread per get (median) shows what the Python
   around the I/O costs.
   ``ssd_tier_python`` is the SSD tier get with the read, checks and decode
   after it run in Python rather than in ``tmem.tier.fastload``'s C.
   The measurements rotate their order run by run; the figures are medians
   over runs.  ``--cpus same`` runs this process (so the host's threads) and
   every redis-server on CPU 0, ``--cpus split`` the redis-servers on CPU 0
   and this process on CPU 1: every measurement runs under the same pinning.
2. **Demotion throughput** to each tier: pages and MiB (as stored, compressed)
   per second of ``Host.demote``, in the same runs.
3. **The workload** (``tmem bench workload``'s default mix, cleancache
   scenario): disk reads of ``private`` (no tmem), of a host with the mix's
   spare memory T, of one with T/4, and of T/4 with an SSD tier or the cluster
   making up the difference; reads avoided are ``private``'s reads less each
   one's, and the figure is each one's share of what the full host avoids.

    python bench/tiers.py [--pages 2000] [--runs 5] [--workload-runs 1]
                          [--dir DIR] [--no-workload] [--processes] [--json]
                          [--cpus any|same|split]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.rediscluster

import tmem  # noqa: E402
from tests.rediscluster import LocalCluster  # noqa: E402
from tmem.store.export import decode_export  # noqa: E402
from tmem.units import parse_size  # noqa: E402
from tmem.workload.cli import DEFAULT_GUESTS, DEFAULT_PRIVATE_PAGES, DEFAULT_SPARE  # noqa: E402
from tmem.workload.config import Configuration, GuestSpec, WorkloadSpec  # noqa: E402
from tmem.workload.model import prepare  # noqa: E402
from tmem.workload.report import summarize  # noqa: E402
from tmem.workload.runner import WorkloadResult, run_configuration  # noqa: E402

PAGE = 4096


def page(i: int) -> bytes:
    return random.Random(i).randbytes(PAGE // 2) + bytes(PAGE // 2)


def percentiles(samples_ns: list[int], cpu_ns: list[int] | None = None) -> dict[str, float]:
    """p50 and p99 of the latencies; with ``cpu_ns``, the median CPU time of this thread."""
    ordered = sorted(samples_ns)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    out = {"p50_us": pick(0.50), "p99_us": pick(0.99)}
    if cpu_ns:
        out["cpu_us"] = statistics.median(cpu_ns) / 1000
    return out


def timed_reads(read: Callable[[int], bytes], n: int, seed: int, what: str) -> dict[str, float]:
    """Read every page once with ``read(i)`` in a shuffled order, checking each: latency
    percentiles and CPU per read. Every kind of read is timed by this one loop."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    times, cpu = [], []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for i in order:
        cpu_start = cpu_clock()  # a system call: kept out of the latency's window
        start = clock()
        data = read(i)
        end = clock()
        cpu.append(cpu_clock() - cpu_start)
        times.append(end - start)
        assert data == page(i), f"{what} {i} came back wrong"
    return percentiles(times, cpu)


def timed_gets(client: Any, pool: int, n: int, seed: int) -> dict[str, float]:
    """Get every page once in a shuffled order: latency percentiles and CPU per get."""
    return timed_reads(lambda i: client.get_page(pool, 1, i), n, seed, "page")


def in_ram(compress: str | None, n: int, seed: int) -> dict[str, float]:
    host = tmem.Host(256 << 20, compress=compress, dedup=None)
    client = host.connect("bench")
    pool = client.new_pool(persistent=True)
    for i in range(n):
        assert client.put_page(pool, 1, i, page(i))
    return timed_gets(client, pool, n, seed)


def in_tier(spec: str, n: int, seed: int, python: bool = False) -> dict[str, float]:
    """Gets of pages demoted to the tier ``spec``; with ``python``, an SSD tier reads,
    checks and decodes them in Python instead of :mod:`tmem.tier.fastload`."""
    # The background thread never demotes here (RAM stays far below its watermark); it
    # brings fetched pages back to RAM, as in a serving host.
    host = tmem.Host(256 << 20, compress="lz4", dedup=None, tiers=[spec])
    if python:
        host.tiers.tiers[0].read_record = None  # type: ignore[union-attr]
        host.tiers.tiers[0].quick_load = None  # type: ignore[union-attr]
        host.tiers.decode = decode_export  # type: ignore[union-attr]
    try:
        client = host.connect("bench")
        pool = client.new_pool(persistent=True)
        for i in range(n):
            assert client.put_page(pool, 1, i, page(i))
        start = time.perf_counter()
        moved = 0
        for _ in range(20):  # a batch the cluster did not confirm in time is tried again
            moved += host.demote(all_pages=True)
            if moved == n:
                break
        seconds = time.perf_counter() - start
        stored = host.stats()["tiering"]["tier_bytes"][0]
        assert moved == n, f"only {moved} of {n} pages went down"
        out = timed_gets(client, pool, n, seed)
        # Promotions the host's thread did while the gets came (it defers them; see
        # tmem.tier.demoter), then the rest, brought back as the host closes.
        out["promoted_during_gets"] = host.stats()["tiering"]["promotions"]
        host.close()
        tiering = host.stats()["tiering"]
        assert tiering["tier_hits"] == n and tiering["promotions"] == n, tiering
        out["demote_pages_per_s"] = moved / seconds
        out["demote_mib_per_s"] = stored / seconds / 2**20
        return out
    finally:
        host.close()


def disk_reads(directory: str, n: int, seed: int) -> dict[str, float]:
    """Uncached 4 KiB reads (``O_DIRECT``) of the same pages from a file in ``directory``,
    written just before, in the same order and with the same check as :func:`timed_reads`:
    the read a get saves, in the same loop."""
    fd_path = tempfile.mkstemp(prefix="tmem-bench-disk-", dir=directory)
    os.close(fd_path[0])
    path = fd_path[1]
    try:
        with open(path, "wb") as f:
            for i in range(n):
                f.write(page(i))
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, PAGE)

        def read(i: int) -> bytes:
            os.preadv(fd, [buf], i * PAGE)
            return buf[:]

        try:
            return timed_reads(read, n, seed, "block")
        finally:
            os.close(fd)
            buf.close()
    finally:
        os.unlink(path)


def redis_gets(cluster: LocalCluster, n: int, seed: int) -> dict[str, float]:
    """The floor under a cluster get: one ``GET`` of a page as the tier stores it (lz4) from
    one primary, with ``redis.Redis`` (hiredis where installed), in the same loop."""
    import lz4.block
    from redis.cluster import RedisCluster

    keys = [f"bench:{{ref}}:{i}" for i in range(n)]  # one hash tag: one primary serves them
    routing = RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=5)
    client = routing.get_redis_connection(routing.get_node_from_key(keys[0]))
    try:
        pipe = client.pipeline(transaction=False)
        for i, key in enumerate(keys):
            pipe.set(key, lz4.block.compress(page(i)))
        pipe.execute()
        return timed_reads(lambda i: lz4.block.decompress(client.get(keys[i])), n, seed, "key")
    finally:
        client.delete(*keys)
        routing.close()


def raw_gets(cluster: LocalCluster, n: int, seed: int) -> dict[str, float]:
    """The round trip's floor: the same ``GET`` as :func:`redis_gets`, written and read on
    a bare TCP socket (the request in one send, the reply read into one buffer)."""
    import lz4.block
    from redis.cluster import RedisCluster

    keys = [f"bench:{{raw}}:{i}" for i in range(n)]
    routing = RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=5)
    node = routing.get_node_from_key(keys[0])
    client = routing.get_redis_connection(node)
    sock = socket.create_connection((node.host, node.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    requests = [b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k.encode()) for k in keys]

    def get(i: int) -> bytes:
        sock.sendall(requests[i])
        got = sock.recv_into(buf)
        while (eol := buf.find(b"\r\n", 0, got)) < 0:
            got += sock.recv_into(view[got:])
        assert buf[0] == ord("$"), bytes(buf[:eol])
        start = eol + 2
        end = start + int(buf[1:eol])
        while got < end + 2:
            got += sock.recv_into(view[got:])
        return lz4.block.decompress(buf[start:end])

    try:
        pipe = client.pipeline(transaction=False)
        for i, key in enumerate(keys):
            pipe.set(key, lz4.block.compress(page(i)))
        pipe.execute()
        return timed_reads(get, n, seed, "raw key")
    finally:
        sock.close()
        client.delete(*keys)
        routing.close()


def pin_cluster(cluster: LocalCluster, cpus: set[int]) -> None:
    """Every thread of every redis-server of ``cluster`` on ``cpus``."""
    for proc in cluster.procs.values():
        for task in os.listdir(f"/proc/{proc.pid}/task"):
            os.sched_setaffinity(int(task), cpus)


def latency_runs(runs: int, n: int, directory: str, cluster: LocalCluster) -> dict[str, Any]:
    ssd = f"ssd:{directory}:{max(64 << 20, 4 * n * PAGE)}"
    kinds = {
        "ram": lambda seed: in_ram(None, n, seed),
        "ram_lz4": lambda seed: in_ram("lz4", n, seed),
        "ssd_tier": lambda seed: in_tier(ssd, n, seed),
        "ssd_tier_python": lambda seed: in_tier(ssd, n, seed, python=True),
        "cluster_tier": lambda seed: in_tier(cluster.spec, n, seed),
        "disk_read": lambda seed: disk_reads(directory, n, seed),
        "redis_get": lambda seed: redis_gets(cluster, n, seed),
        "raw_get": lambda seed: raw_gets(cluster, n, seed),
    }
    names = list(kinds)
    per_run: list[dict[str, dict[str, float]]] = []
    for r in range(runs):
        order = names[r % len(names) :] + names[: r % len(names)]
        print(f"latency run {r + 1} of {runs}: {', '.join(order)}", file=sys.stderr)
        per_run.append({name: kinds[name](r) for name in order})
    out: dict[str, Any] = {}
    for name in names:
        keys = per_run[0][name]
        out[name] = {k: statistics.median(run[name][k] for run in per_run) for k in keys}
    disk, plain, raw = out["disk_read"], out["redis_get"], out["raw_get"]
    for name in ("ssd_tier", "ssd_tier_python", "cluster_tier"):
        out[name]["p50_vs_disk"] = out[name]["p50_us"] / disk["p50_us"]
        out[name]["p99_vs_disk"] = out[name]["p99_us"] / disk["p99_us"]
    out["cluster_tier"]["p50_vs_redis_get"] = out["cluster_tier"]["p50_us"] / plain["p50_us"]
    out["cluster_tier"]["p99_vs_redis_get"] = out["cluster_tier"]["p99_us"] / plain["p99_us"]
    out["cluster_tier"]["p50_vs_raw_get"] = out["cluster_tier"]["p50_us"] / raw["p50_us"]
    out["cluster_tier"]["p99_vs_raw_get"] = out["cluster_tier"]["p99_us"] / raw["p99_us"]
    return out


def workload_runs(
    runs: int, directory: str, cluster: LocalCluster, processes: bool = False
) -> dict[str, Any]:
    spare = parse_size(DEFAULT_SPARE)
    quarter = spare // 4
    ssd = f"ssd:{directory}:{max(spare, 4 << 20)}"
    spec = WorkloadSpec(
        guests=tuple(GuestSpec.parse(g) for g in DEFAULT_GUESTS),
        private_pages=DEFAULT_PRIVATE_PAGES,
        spare_bytes=spare,
        scenario="cleancache",
        processes=processes,
    )
    run = run_configuration
    if processes:  # each guest a process, a client of a daemon serving the host (and its tiers)
        from tmem.workload.processes import run_configuration_processes as run
    m = spec.private_pages
    static_pages = m + spare // len(spec.guests) // spec.page_size
    configs = [
        Configuration("private", m, None),
        Configuration("static", static_pages, None),
        Configuration("tmem", m, spare),
        Configuration("tmem-quarter", m, quarter),
        Configuration("tmem-quarter+ssd", m, quarter, tiers=(ssd,)),
        Configuration("tmem-quarter+cluster", m, quarter, tiers=(cluster.spec,)),
    ]
    per_run = []
    prepared = prepare(spec)
    try:
        for r in range(runs):
            order = configs[2:]
            order = configs[:2] + order[r % len(order) :] + order[: r % len(order)]
            print(f"workload run {r + 1} of {runs}", file=sys.stderr)
            with tempfile.TemporaryDirectory(prefix="tmem-bench-workload-") as tmp:
                results = [run(prepared, c, Path(tmp)) for c in order]
            summary = summarize(WorkloadResult(spec, prepared.describe(), results))
            reads = {c["name"]: c["total"]["disk_reads"] for c in summary["configurations"]}
            hosts = {c["name"]: c.get("host") or {} for c in summary["configurations"]}
            per_run.append((reads, hosts))
    finally:
        prepared.content.corpus.close()
    names = [c.name for c in configs]
    reads = {n: statistics.median(run[0][n] for run in per_run) for n in names}
    avoided = {n: reads["private"] - reads[n] for n in names}
    full = avoided["tmem"]
    return {
        "spare_bytes": spare,
        "disk_reads": reads,
        "reads_avoided": avoided,
        "share_of_full_host": {n: avoided[n] / full if full else None for n in names},
        "hosts_last_run": per_run[-1][1],
    }


def markdown(lat: dict[str, Any], work: dict[str, Any] | None) -> str:
    lines = [
        "| page is | get p50 µs | get p99 µs | CPU µs | p50 ÷ disk read | p99 ÷ disk read "
        "| demotion pages/s | demotion MiB/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "ram": "in RAM",
        "ram_lz4": "in RAM, lz4",
        "ssd_tier": "on the SSD tier",
        "ssd_tier_python": "on the SSD tier, read and decoded in Python",
        "cluster_tier": "on the Redis Cluster",
        "disk_read": "uncached 4 KiB disk read",
        "redis_get": "plain GET from one primary (redis.Redis)",
        "raw_get": "the same GET on a bare socket",
    }
    for name, label in labels.items():
        f = lat[name]
        cells = [f"{f['p50_us']:.1f}", f"{f['p99_us']:.1f}", f"{f.get('cpu_us', 0):.1f}"]
        cells += [f"{f[k]:.2f}" if k in f else "-" for k in ("p50_vs_disk", "p99_vs_disk")]
        cells += [
            f"{f[k]:.0f}" if k in f else "-" for k in ("demote_pages_per_s", "demote_mib_per_s")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cluster = lat["cluster_tier"]
    lines.append(
        f"\ncluster get ÷ plain GET: p50 {cluster['p50_vs_redis_get']:.2f}, "
        f"p99 {cluster['p99_vs_redis_get']:.2f}; ÷ bare-socket GET: "
        f"p50 {cluster['p50_vs_raw_get']:.2f}, p99 {cluster['p99_vs_raw_get']:.2f}"
    )
    if work:
        lines += [
            "",
            "| cleancache, default mix | disk reads | reads avoided | share of the full host's |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, n in work["disk_reads"].items():
            share = work["share_of_full_host"][name]
            lines.append(
                f"| {name} | {n:.0f} | {work['reads_avoided'][name]:.0f} "
                f"| {'-' if share is None else f'{share:.3f}'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workload-runs", type=int, default=1)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="the SSD tier's disk")
    parser.add_argument("--no-workload", action="store_true")
    parser.add_argument("--processes", action="store_true", help="workload guests as processes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cpus",
        choices=("any", "same", "split"),
        default="any",
        help="same: this process and every redis-server on CPU 0; split: redis on CPU 0, "
        "this process on CPU 1; any: unpinned",
    )
    args = parser.parse_args(argv)
    if args.cpus != "any":  # before any thread starts: the host's threads inherit it
        os.sched_setaffinity(0, {0} if args.cpus == "same" else {1})
    cluster = LocalCluster()
    try:
        if args.cpus != "any":
            pin_cluster(cluster, {0})
        lat = latency_runs(args.runs, args.pages, args.dir, cluster)
        work = None
        if not args.no_workload:
            work = workload_runs(args.workload_runs, args.dir, cluster, args.processes)
    finally:
        cluster.stop()
    load = os.getloadavg()
    if args.json:
        out = {"latency": lat, "workload": work, "loadavg": load, "cpus": args.cpus}
        print(json.dumps(out, indent=1))
    else:
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, cpus {args.cpus}\n")
        print(markdown(lat, work))


if __name__ == "__main__":
    main()

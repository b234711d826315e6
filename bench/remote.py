"""The daemon against its floor, Redis and memcached: 4 KiB pages, same run, same socket.

Starts ``tmem serve``, the floor (``bench/floor.py``: a bare Python epoll echo
server answering frames of tmem's sizes), ``redis-server`` (through redis-py)
and ``memcached`` (through pymemcache, replies waited for; a batch of sets
goes with ``noreply`` and ends with one round trip, ``version``, which memcached
answers only after every set before it on the connection: its one 8-byte reply
per set can fill a Unix socket's send buffer while the client is still
sending the batch, and then both wait forever), every one on a
Unix socket, then measures for each: p50/p99 latency of single puts and gets,
pages/s of batched puts and gets, and the total ops/s of 16 concurrent client
processes.  Within a run the systems take turns (blocks of single operations,
one batch at a time), and each run starts with another system, so that the
machine's changing load falls on all of them alike.

Single and batched figures are taken twice per run: with every server and
the client pinned to one CPU (``same``: a request and its reply cost no
cross-CPU wake-up, which on a small virtual machine can cost 50 µs and hide
everything else) and with the servers on CPU 0 and the client on CPU 1
(``split``).  The 16 processes run unpinned.  Each figure is the median of
``--runs`` runs; ratios are tmem's figure over the reference's.

    python bench/remote.py --runs 5 --ops 20000
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import tmem

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving  # noqa: E402
from floor import FloorStore  # noqa: E402

PAGE = 4096
KEYS = 2048  # working set of distinct pages (8 MiB)
BLOCK = 500  # single operations per turn of each system


# --- servers ---------------------------------------------------------------


def _wait(check: Callable[[], bool], what: str, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError, tmem.TmemError):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def _unix_open(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(0.2)
        sock.connect(path)
    return True


def _redis_command(path: str) -> list[str]:
    return ["redis-server", "--port", "0", "--unixsocket", path, "--unixsocketperm", "777",
            "--save", "", "--appendonly", "no", "--loglevel", "warning"]  # fmt: skip


def _memcached_command(path: str) -> list[str]:
    user = ["-u", "nobody"] if os.getuid() == 0 else []  # memcached refuses to run as root
    return ["memcached", "-s", path, "-a", "0777", "-m", "1024", *user]


def _floor_command(path: str) -> list[str]:
    return [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor.py"),
            path]  # fmt: skip


@contextlib.contextmanager
def servers(workdir: str) -> Iterator[dict[str, Any]]:
    """Start tmem serve, and redis-server and memcached where installed; yield their
    addresses; stop them."""
    procs: list[subprocess.Popen] = []
    out: dict[str, Any] = {}
    os.chmod(workdir, 0o777)  # memcached, run as nobody under root, creates its socket here
    try:
        path = os.path.join(workdir, "tmem.sock")
        options = ["--capacity", "2G", "--compress", "none", "--log-level", "warning"]
        procs.append(serving.start(path, *options))
        out["tmem"] = "unix:" + path
        for name, binary, command in (
            ("floor", sys.executable, _floor_command),
            ("redis", "redis-server", _redis_command),
            ("memcached", "memcached", _memcached_command),
        ):
            if shutil.which(binary):
                path = os.path.join(workdir, name + ".sock")
                procs.append(subprocess.Popen(command(path), stdout=subprocess.DEVNULL))
                _wait(lambda path=path: _unix_open(path), binary, procs[-1])
                out[name] = path
        SERVER_PIDS[:] = [proc.pid for proc in procs]
        yield out
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


#: Processes of the servers, for pinning them to CPUs.
SERVER_PIDS: list[int] = []


def pin(placement: str) -> None:
    """Pin every server thread to CPU 0 and this process to CPU 0 (``same``) or 1
    (``split``); ``any`` unpins everything."""
    cpus = sorted(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
    server = set(cpus) if placement == "any" else {cpus[0]}
    client = {"any": set(cpus), "same": {cpus[0]}, "split": {cpus[-1]}}[placement]
    for pid in SERVER_PIDS:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), server)
    os.sched_setaffinity(0, client)


# --- one uniform store interface per system ---------------------------------


class TmemStore:
    def __init__(self, address: str, name: str) -> None:
        self.client = tmem.connect(address, name=name)
        self.pool = self.client.new_pool(persistent=True)

    def put(self, key: int, data: bytes) -> None:
        assert self.client.put_page(self.pool, 1, key, data)

    def get(self, key: int) -> bytes | None:
        return self.client.get_page(self.pool, 1, key)

    def put_many(self, items: list[tuple[int, bytes]]) -> None:
        assert all(self.client.put_pages(self.pool, [(1, k, d) for k, d in items]))

    def get_many(self, keys: list[int]) -> list[Any]:
        return self.client.get_pages(self.pool, [(1, k) for k in keys])

    def close(self) -> None:
        self.client.close()


class RedisStore:
    def __init__(self, path: str, name: str) -> None:
        import redis

        self.r = redis.Redis(unix_socket_path=path)
        self.prefix = name.encode() + b":"

    def put(self, key: int, data: bytes) -> None:
        self.r.set(self.prefix + b"%d" % key, data)

    def get(self, key: int) -> bytes | None:
        return self.r.get(self.prefix + b"%d" % key)

    def put_many(self, items: list[tuple[int, bytes]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for key, data in items:
            pipe.set(self.prefix + b"%d" % key, data)
        pipe.execute()

    def get_many(self, keys: list[int]) -> list[Any]:
        return self.r.mget([self.prefix + b"%d" % k for k in keys])

    def close(self) -> None:
        self.r.close()


class MemcachedStore:
    def __init__(self, path: str, name: str) -> None:
        from pymemcache.client.base import Client

        self.c = Client(path)
        self.prefix = name + ":"

    def put(self, key: int, data: bytes) -> None:
        self.c.set(f"{self.prefix}{key}", data, noreply=False)

    def get(self, key: int) -> bytes | None:
        return self.c.get(f"{self.prefix}{key}")

    def put_many(self, items: list[tuple[int, bytes]]) -> None:
        self.c.set_many({f"{self.prefix}{k}": d for k, d in items}, noreply=True)
        self.c.version()  # answered after every set before it: the batch is stored

    def get_many(self, keys: list[int]) -> list[Any]:
        got = self.c.get_many([f"{self.prefix}{k}" for k in keys])
        return [got.get(f"{self.prefix}{k}") for k in keys]

    def close(self) -> None:
        self.c.close()


STORES = {"tmem": TmemStore, "floor": FloorStore, "redis": RedisStore, "memcached": MemcachedStore}
#: Systems whose replies are checked against the pages put (the floor echoes zeros).
CHECKED = {"tmem", "redis", "memcached"}


# --- measurements -----------------------------------------------------------


def pages(n: int) -> list[bytes]:
    """``n`` distinct incompressible pages."""
    return [os.urandom(PAGE) for _ in range(n)]


def _timed_block(
    store: Any, keys: list[int], data: list[bytes], lat: dict[str, list], check: bool
) -> None:
    """Single puts of ``keys``, then single gets of them (checked), into ``lat``."""
    clock = time.perf_counter_ns
    put, get, puts, gets = store.put, store.get, lat["put"], lat["get"]
    for key in keys:
        t0 = clock()
        put(key, data[key])
        puts.append(clock() - t0)
    for key in keys:
        t0 = clock()
        got = get(key)
        gets.append(clock() - t0)
        if check and got != data[key]:
            raise AssertionError(f"wrong page for key {key}")


def single_ops(stores: dict[str, Any], ops: int, data: list[bytes]) -> dict[str, dict]:
    """p50/p99 (microseconds) of single puts and gets per system.

    The systems take turns in blocks of :data:`BLOCK` operations, so that a
    change in the machine's load falls on all of them alike.
    """
    lat = {kind: {"put": [], "get": []} for kind in stores}
    for start in range(0, ops, BLOCK):
        keys = [(start + i) % KEYS for i in range(min(BLOCK, ops - start))]
        for kind, store in stores.items():
            _timed_block(store, keys, data, lat[kind], kind in CHECKED)
    out: dict[str, dict] = {}
    for kind, by_op in lat.items():
        out[kind] = {}
        for op, values in by_op.items():
            values.sort()
            out[kind][f"{op}_p50_us"] = values[len(values) // 2] / 1e3
            out[kind][f"{op}_p99_us"] = values[int(len(values) * 0.99)] / 1e3
    return out


def batched(stores: dict[str, Any], total: int, batch: int, data: list[bytes]) -> dict[str, dict]:
    """Pages per second of batched puts and gets per system, the systems taking turns."""
    spent = {kind: {"put": 0.0, "get": 0.0} for kind in stores}
    for start in range(0, total, batch):
        keys = [i % KEYS for i in range(start, min(start + batch, total))]
        for kind, store in stores.items():
            t0 = time.perf_counter()
            store.put_many([(k, data[k]) for k in keys])
            t1 = time.perf_counter()
            got = store.get_many(keys)
            spent[kind]["put"] += t1 - t0
            spent[kind]["get"] += time.perf_counter() - t1
            if kind in CHECKED and got != [data[k] for k in keys]:
                raise AssertionError(f"wrong page in a batch from {kind}")
    return {
        kind: {"batch_put_pages_s": total / t["put"], "batch_get_pages_s": total / t["get"]}
        for kind, t in spent.items()
    }


def _worker(kind: str, address: Any, name: str, ops: int, barrier: Any, queue: Any) -> None:
    store = STORES[kind](address, name)
    data = os.urandom(PAGE)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(ops):
        store.put(i % 256, data)
        store.get(i % 256)
    queue.put((t0, time.perf_counter()))
    store.close()


def concurrent(kind: str, address: Any, clients: int, ops: int) -> float:
    """Total single operations per second of ``clients`` processes (a put and a get each)."""
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(clients), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(kind, address, f"c{i}", ops, barrier, queue))
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    spans = [queue.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    return 2 * ops * clients / (max(e for _, e in spans) - min(s for s, _ in spans))


def one_run(addresses: dict[str, Any], args: argparse.Namespace, run: int) -> dict[str, dict]:
    data = pages(KEYS)
    kinds = list(addresses)
    shift = run % len(kinds)  # each run starts with another system: load drifts fall on all
    kinds = kinds[shift:] + kinds[:shift]
    stores = {kind: STORES[kind](addresses[kind], f"bench{run}") for kind in kinds}
    out: dict[str, dict] = {kind: {} for kind in kinds}
    try:
        for placement in args.placements:
            pin(placement)
            for kind, figures in single_ops(stores, args.ops, data).items():
                out[kind].update({f"{placement}_{k}": v for k, v in figures.items()})
            for kind, figures in batched(stores, args.batch_total, args.batch, data).items():
                out[kind].update({f"{placement}_{k}": v for k, v in figures.items()})
    finally:
        pin("any")
        for store in stores.values():
            store.close()
    for kind in kinds:
        out[kind]["concurrent_ops_s"] = concurrent(
            kind, addresses[kind], args.clients, args.client_ops
        )
    return out


# --- report -------------------------------------------------------------------

PER_PLACEMENT = (
    ("put_p50_us", "single put p50 (us)"),
    ("put_p99_us", "single put p99 (us)"),
    ("get_p50_us", "single get p50 (us)"),
    ("get_p99_us", "single get p99 (us)"),
    ("batch_put_pages_s", "batched put (pages/s)"),
    ("batch_get_pages_s", "batched get (pages/s)"),
)


def figures(placements: list[str]) -> list[tuple[str, str]]:
    """(key, label) of every figure a run reports, placement by placement."""
    out = [(f"{p}_{key}", f"{p} CPU: {label}") for p in placements for key, label in PER_PLACEMENT]
    return [*out, ("concurrent_ops_s", "16 clients, total ops/s")]


def report(runs: list[dict[str, dict]], clients: int, placements: list[str]) -> str:
    order = ("tmem", "floor", "memcached", "redis")
    kinds = sorted(runs[0], key=lambda k: order.index(k) if k in order else len(order))
    table = figures(placements)
    med = {k: {f: statistics.median(r[k][f] for r in runs) for f, _ in table} for k in kinds}
    refs = [k for k in kinds if k != "tmem"]
    head = "| figure | " + " | ".join(kinds) + " | " + " | ".join(f"tmem/{r}" for r in refs)
    lines = [head + " |", "|" + "---|" * (1 + len(kinds) + len(refs))]
    for key, label in table:
        label = label.replace("16 clients", f"{clients} clients")
        row = [
            f"{med[k][key]:,.1f}" if key.endswith("us") else f"{med[k][key]:,.0f}" for k in kinds
        ]
        ratios = [f"{med['tmem'][key] / med[r][key]:.2f}" for r in refs]
        lines.append(f"| {label} | " + " | ".join(row + ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ops", type=int, default=20000, help="single ops per kind per run")
    parser.add_argument("--batch", type=int, default=1024, help="pages per batched call")
    parser.add_argument("--batch-total", type=int, default=65536, help="pages per batch figure")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client-ops", type=int, default=2000, help="put+get pairs per client")
    parser.add_argument("--only", choices=sorted(STORES), action="append")
    parser.add_argument(
        "--placement", dest="placements", action="append", choices=("same", "split"),
        help="CPU placement of single and batched figures (default: both)",
    )  # fmt: skip
    args = parser.parse_args()
    args.placements = args.placements or ["same", "split"]
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir, servers(workdir) as addresses:
        if args.only:
            addresses = {k: v for k, v in addresses.items() if k in args.only}
        runs = []
        for run in range(args.runs):
            runs.append(one_run(addresses, args, run))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    load = ", ".join(f"{x:.1f}" for x in (start_load, os.getloadavg()[0]))
    build = "compiled" if tmem.compiled() else "pure Python"
    print(
        f"# {args.runs} runs, medians; {os.cpu_count()} CPUs; python {sys.version.split()[0]};"
        f" load average {load} (start, end); tmem {build}"
    )
    print(report(runs, args.clients, args.placements))


if __name__ == "__main__":
    main()

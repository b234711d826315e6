"""Instructions per request through a real daemon and through its floor, counted by valgrind.

``bench/remote.py`` times the daemon against its floor (``bench/floor.py``), but
on a loaded two-CPU machine its timings move by tens of percent from run to
run.  This counts, instead, the user-space instructions each request costs on
both sides of the same Unix socket:

* the server: ``tmem serve`` (raw pages, no compression) and the floor, each
  run under ``valgrind --tool=callgrind --dump-before=getppid``;
* the client: one process, also under callgrind, that drives both servers in
  turn with the bench's own store classes (``bench/remote.py``'s ``TmemStore``,
  the floor's ``FloorStore``): single puts, single gets, and batches of puts
  and gets.

Between phases the client calls ``os.getppid()`` (its own counters are
dumped there) and asks each server to do the same: a STATS request makes the
daemon call it (a wrapper around its STATS handler, put in its dispatcher's
table of handlers by this script only), and a frame of no body and no reply
makes the floor call it.  Each phase's counters are then divided by its
requests (by its pages, for batches).  An empty phase (two marks in a row)
is subtracted from each, so the marks' own work is not counted.  The kernel's
work (system calls, page faults, wake-ups) is not counted: both systems make
the same system calls per request, so the difference between them is the
Python each one runs.

``--src DIR`` counts another source tree (a ``git worktree`` of an older
commit's ``src``); ``--compare DIR`` counts both and prints the ratio.

    python bench/daemon_instructions.py [--ops 2000] [--batches 16] [--batch 256]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from instructions import callgrind, segments, source_tree  # noqa: E402

PHASES = ("put", "get", "batch_put", "batch_get")

#: ``tmem serve`` with its STATS handler marked: every STATS request calls getppid first.
SERVER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv.pop(1))
    from tmem.daemon import server
    from tmem.wire import Op
    made = server.Server
    def marked_server(*args, **kwargs):  # a compiled class's methods cannot be replaced
        daemon = made(*args, **kwargs)
        handlers = daemon.dispatcher.handlers
        stats = handlers[Op.STATS]
        def marked(session, body):
            os.getppid()
            return stats(session, body)
        handlers[Op.STATS] = marked
        return daemon
    server.Server = marked_server  # what `tmem serve` makes its server with
    from tmem.cli import main
    sys.argv[0] = "tmem"
    main()
    """
)

CLIENT = textwrap.dedent(
    """
    import json, os, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import tmem
    from floor import FloorStore, REQUEST
    from remote import TmemStore
    ops, batches, batch = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    warm = 500  # pages put and got before counting: tables, buffers and arenas exist
    pages = [os.urandom(4096) for _ in range(max(ops, batch, warm))]
    labels = []

    class EngineStore:
        \"\"\"The daemon's calls on an embedded host: pages as views, as the daemon has them.\"\"\"
        def __init__(self):
            self.client = tmem.Host(1 << 30, compress=None, dedup=None).connect("count")
            self.pool = self.client.new_pool(persistent=True)
            self.views = [memoryview(p) for p in pages]
        def put(self, key, data):
            self.client.put_page(self.pool, 1, key, self.views[key])
        def get(self, key):
            return self.client.get_page(self.pool, 1, key)
        def put_many(self, items):
            views = self.views
            self.client.put_pages(self.pool, [(1, k, views[k]) for k, _ in items], errors="return")
        def get_many(self, keys):
            return self.client.get_pages(self.pool, [(1, k) for k in keys], errors="return")
        def close(self):
            pass

    def mark(store, label):
        \"\"\"End the segment ``label`` here and in the server (None: set-up).\"\"\"
        if isinstance(store, TmemStore):
            store.client.stats()
        elif isinstance(store, FloorStore):
            store.sock.sendall(REQUEST.pack(0, 0))
        labels.append(label)
        os.getppid()

    def phases(store):
        for i in range(warm):
            store.put(i, pages[i])
            store.get(i)
        store.put_many([(i, pages[i]) for i in range(batch)])
        store.get_many(list(range(batch)))
        mark(store, None)
        mark(store, "empty")
        for i in range(ops):
            store.put(i, pages[i])
        mark(store, "put")
        for i in range(ops):
            store.get(i)
        mark(store, "get")
        keys = list(range(batch))
        for _ in range(batches):
            store.put_many([(k, pages[k]) for k in keys])
        mark(store, "batch_put")
        for _ in range(batches):
            store.get_many(keys)
        mark(store, "batch_get")

    for kind, address in (("tmem", sys.argv[3]), ("floor", sys.argv[4])):
        store = TmemStore(address, "count") if kind == "tmem" else FloorStore(address, "count")
        phases(store)
        store.close()
    phases(EngineStore())
    print(json.dumps(labels))
    """
)


def _wait_socket(path: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 300  # imports under valgrind take a while
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start")


def count(
    src: Path, ops: int, batches: int, batch: int, keep: Path | None = None
) -> dict[str, dict[str, float]]:
    """Instructions per request (per page for batches) of tmem's and the floor's server
    and client, with tmem imported from ``src``; with ``keep``, callgrind's files are
    left in that folder (for ``callgrind_annotate``)."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(src))
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext(str(keep)) if keep else tempfile.TemporaryDirectory() as tmp:
        sock = {kind: os.path.join(tmp, kind + ".sock") for kind in ("tmem", "floor")}
        outs = {kind: os.path.join(tmp, kind + ".cg") for kind in ("tmem", "floor", "client")}
        servers = {
            "tmem": subprocess.Popen(
                [*callgrind(outs["tmem"]), sys.executable, "-c", SERVER, str(src), "serve",
                 "--socket", sock["tmem"], "--capacity", "1G", "--compress", "none",
                 "--dedup", "none", "--log-level", "warning"],
                env=env, stderr=subprocess.DEVNULL,
            ),  # fmt: skip
            "floor": subprocess.Popen(
                [*callgrind(outs["floor"]), sys.executable, str(HERE / "floor.py"),
                 sock["floor"]],
                env=env, stderr=subprocess.DEVNULL,
            ),  # fmt: skip
        }
        try:
            for kind, proc in servers.items():
                _wait_socket(sock[kind], proc, kind)
            child = subprocess.run(
                [*callgrind(outs["client"]), sys.executable, "-c", CLIENT, str(src), str(HERE),
                 "unix:" + sock["tmem"], sock["floor"], str(ops), str(batches), str(batch)],
                env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
        finally:
            for proc in servers.values():
                proc.terminate()
            for proc in servers.values():
                proc.wait(120)
        labels = json.loads(child.stdout.splitlines()[-1])
        client = segments(outs["client"])
        third = len(labels) // 3  # the client's marks: tmem's phases, the floor's, the engine's
        floor = slice(third, 2 * third)
        by_kind = {
            "tmem": (labels[:third], segments(outs["tmem"]), client[:third]),
            "floor": (labels[floor], segments(outs["floor"]), client[floor]),
        }
        engine = dict(zip(labels[2 * third :], client[2 * third :], strict=True))
    per = {"put": ops, "get": ops, "batch_put": batches * batch, "batch_get": batches * batch}
    report: dict[str, dict[str, float]] = {}
    for kind, (names, server, mine) in by_kind.items():
        # the servers' first segment holds their start-up: marks line up from there
        seg = dict(zip(names, zip(server[: len(names)], mine, strict=True), strict=True))
        empty_server, empty_client = seg["empty"]
        for phase in PHASES:
            s, c = seg[phase]
            report.setdefault(phase, {})
            report[phase][f"{kind}_server"] = (s - empty_server) / per[phase]
            report[phase][f"{kind}_client"] = (c - empty_client) / per[phase]
    for phase in PHASES:
        report[phase]["engine"] = (engine[phase] - engine["empty"]) / per[phase]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="single puts, then gets")
    parser.add_argument("--batches", type=int, default=16, help="batched calls per phase")
    parser.add_argument("--batch", type=int, default=256, help="pages per batched call")
    parser.add_argument("--src", type=source_tree, default=SRC, help="source tree to count")
    parser.add_argument("--compare", type=source_tree, help="a second source tree, counted too")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="leave callgrind's files in this folder")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    trees = [args.src] + ([args.compare] if args.compare else [])
    results = [
        count(tree, args.ops, args.batches, args.batch, args.keep and args.keep / str(i))
        for i, tree in enumerate(trees)
    ]
    if args.json:
        print(json.dumps({str(t): r for t, r in zip(trees, results, strict=True)}, indent=2))
        return
    print(f"user-space instructions per request (per page for batches of {args.batch});"
          f" {args.ops} single requests, {args.batches} batches")  # fmt: skip
    for tree, result in zip(trees, results, strict=True):
        print(f"\n{tree}")
        print(f"{'phase':10} {'tmem srv':>9} {'tmem cli':>9} {'floor srv':>9} {'floor cli':>9}"
              f" {'engine':>9} {'srv ratio':>9} {'total ratio':>11}"
              f" {'srv-engine-floor':>16}")  # fmt: skip
        for phase in PHASES:
            r = result[phase]
            tmem_total = r["tmem_server"] + r["tmem_client"]
            floor_total = r["floor_server"] + r["floor_client"]
            print(f"{phase:10} {r['tmem_server']:9,.0f} {r['tmem_client']:9,.0f}"
                  f" {r['floor_server']:9,.0f} {r['floor_client']:9,.0f} {r['engine']:9,.0f}"
                  f" {r['tmem_server'] / r['floor_server']:9.2f}"
                  f" {tmem_total / floor_total:11.2f}"
                  f" {r['tmem_server'] - r['engine'] - r['floor_server']:16,.0f}")  # fmt: skip
    if args.compare:
        print(f"\n{args.src} over {args.compare}, tmem server and client together:")
        for phase in PHASES:
            a, b = (r[phase]["tmem_server"] + r[phase]["tmem_client"] for r in results)
            print(f"{phase:10} {a:9,.0f} {b:9,.0f} {a / b:6.2f}")


if __name__ == "__main__":
    main()

"""Instructions per page operation, counted by valgrind: figures the machine's load cannot move.

Runs one child process under ``valgrind --tool=callgrind`` that does, on an
embedded host, the work of ``bench/engine.py`` (puts, gets, then flushes in a
random order, on a persistent pool: raw pages on a raw host, pages of the
standard library's sources on an lz4 host) and a put and a get on an
ephemeral pool of a full host (every put evicts a page; five clients
connected), and frames through the daemon's dispatcher (no socket): single
PUT and GET frames and batches of 256 pages, on a raw host; and gets of
pages demoted to the SSD tier (lz4 host; their promotion back to RAM, done
at once by a host without its thread, counted too) beside the read each saves, an ``O_DIRECT`` 4 KiB
``preadv`` into a buffer and a copy out of it (``ssd_tier_get``,
``disk_read_4k``).  The child
calls ``os.getppid()`` between phases, and callgrind dumps its counters
there (``--dump-before=getppid``), so each phase's user-space instructions
are counted apart; they are printed per operation (per page for batches).  The kernel's
work (page faults, ``madvise``) is not counted: it is CPU time, not
instructions.

``--src DIR`` runs the child against another source tree (say a ``git
worktree`` of an older commit's ``src``), and ``--compare DIR`` counts both and
prints the ratio, so a change is measured against what it replaced in one run.
``--engine-only`` counts only the embedded host's phases (no tier, no daemon).

    python bench/instructions.py [--pages 2000] [--src DIR] [--compare DIR] [--engine-only] [--json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

CHILD = textwrap.dedent(
    """
    import json, os, random, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import tmem
    from engine import raw_pages, text_pages
    n = int(sys.argv[3])
    engine_only = sys.argv[4] == "engine"
    labels = []

    def mark(label):
        \"\"\"End the segment ``label`` (None: set-up): callgrind dumps its counters here.\"\"\"
        labels.append(label)
        os.getppid()

    raw, text = raw_pages(n), text_pages(n)
    order = list(range(n))
    random.Random(1).shuffle(order)

    def ops(compress, pages, tag):
        host = tmem.Host(capacity=n * 6000, compress=compress, dedup=None)
        client = host.connect("bench")
        pool = client.new_pool(persistent=True)
        put, get, flush = client.put_page, client.get_page, client.flush_page
        for i, data in enumerate(pages[:500]):  # arenas and tables exist before counting
            put(pool, 1 << 40, i, data)
        for i in range(500):
            flush(pool, 1 << 40, i)
        mark(None)
        for i, data in enumerate(pages):
            put(pool, i >> 6, i & 63, data)
        mark(tag + "put")
        for i in range(n):
            get(pool, i >> 6, i & 63)
        mark(tag + "get")
        for i in order:
            flush(pool, i >> 6, i & 63)
        mark(tag + "flush")

    def evicting(compress, pages, tag):
        host = tmem.Host(capacity=2 << 20, compress=compress)
        client = [host.connect(f"guest{i}") for i in range(5)][0]
        pool = client.new_pool()
        put, get = client.put_page, client.get_page
        for i in range(2000):  # full before counting
            put(pool, 1 << 40, i, pages[i % n])
        mark(None)
        for i in range(n):
            put(pool, i >> 6, i & 63, pages[i])
        mark(tag + "put")
        for i in range(n):
            get(pool, i >> 6, i & 63)
        mark(tag + "get")

    def daemon(pages, batch=256):
        from tmem.daemon.dispatch import Dispatcher, Session
        from tmem.wire import Op
        from tmem.wire import messages as msg
        from tmem.wire.frames import OutBuffer
        host = tmem.Host(capacity=n * 6000, compress=None)
        dispatch = Dispatcher(host, None, 8 << 20).dispatch
        session = Session(None)
        session.client, session.greeted = host.connect("bench"), True
        pool = session.client.new_pool(persistent=True)
        out = OutBuffer()
        handle = [msg.HANDLE.pack(pool, (i >> 6).to_bytes(24, "little"), i & 63) for i in range(n)]
        puts = [memoryview(handle[i] + pages[i]) for i in range(n)]
        gets = [memoryview(h) for h in handle]
        items = [(i >> 6, i & 63, pages[i]) for i in range(n)]
        head = msg.HEADER.size
        size = len(pages[0])
        put_batches = [
            memoryview(b"".join(msg.encode_put_pages(pool, size, items[k : k + batch])))[head:]
            for k in range(0, n, batch)
        ]
        get_batches = [
            memoryview(msg.encode_get_pages(pool, [it[:2] for it in items[k : k + batch]]))[head:]
            for k in range(0, n, batch)
        ]
        for op, bodies in ((Op.PUT, puts[:500]), (Op.GET, gets[:500])):
            for body in bodies:
                dispatch(session, op, 1, body, out)
                out.consumed(out.queued)
        for i in range(500):
            session.client.flush_page(pool, i >> 6, i & 63)
        for label, op, bodies in (
            ("daemon_put", Op.PUT, puts), ("daemon_get", Op.GET, gets), ("flush", None, ()),
            ("daemon_batch_put", Op.PUT_PAGES, put_batches),
            ("daemon_batch_get", Op.GET_PAGES, get_batches),
        ):
            if op is None:  # empty the pool, so that the batched puts store new pages
                for i in range(n):
                    session.client.flush_page(pool, i >> 6, i & 63)
            mark(None)
            for body in bodies:
                batch = dispatch(session, op, 1, body, out)
                while batch is not None and not batch.step(session, out):
                    pass  # a batch of more than SLICE_ITEMS runs a slice per step
                out.consumed(out.queued)
            mark(label)
        assert host.stats()["pages"] == n

    def tiered(pages):
        # A get of a page on the SSD tier (lz4) and its promotion back to RAM (at once: a
        # host without its thread, whose wake-ups would depend on valgrind's pace),
        # against the read it saves: O_DIRECT 4 KiB into a buffer.
        import mmap, tempfile
        where = tempfile.mkdtemp(prefix="tmem-instructions-")
        host = tmem.Host(capacity=n * 6000, compress="lz4", dedup=None,
                         tiers=[f"ssd:{where}:{max(64 << 20, 2 * n * 4096)}"],
                         demote_in_background=False)
        client = host.connect("bench")
        pool = client.new_pool(persistent=True)
        get = client.get_page
        for i, data in enumerate(pages):
            client.put_page(pool, i >> 6, i & 63, data)
        assert host.demote(all_pages=True) == n
        mark(None)
        for i in order:
            get(pool, i >> 6, i & 63)
        mark("ssd_tier_get")
        host.close()
        path = os.path.join(where, "reference")
        with open(path, "wb") as f:
            f.write(b"".join(pages))
            os.fsync(f.fileno())
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        mark(None)
        for i in order:
            os.preadv(fd, [buf], i * 4096)
            buf[:]
        mark("disk_read_4k")
        os.close(fd)
        os.unlink(path)
        os.rmdir(where)

    if not engine_only:
        tiered(text)
    ops(None, raw, "raw_")
    ops("lz4", text, "lz4_")
    evicting(None, raw, "evict_raw_")
    evicting("lz4", text, "evict_lz4_")
    if not engine_only:
        daemon(raw)
    print(json.dumps(labels))
    """
)


def count(src: Path, pages: int, engine_only: bool = False) -> dict[str, float]:
    """Instructions per operation of each phase, with the package imported from ``src``.

    The ``daemon_*`` phases run frames through the daemon's dispatcher (no
    socket) on a raw host: single PUT and GET frames, and batches of 256 pages
    (counted per page).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        child = subprocess.run(
            [*callgrind(out), sys.executable, "-c", CHILD,
             str(src), str(HERE), str(pages), "engine" if engine_only else "all"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        labels = json.loads(child.stdout.splitlines()[-1])
        totals = segments(out)
    return {
        label: total / pages
        for label, total in zip(labels, totals, strict=True)
        if label is not None and label != "flush"
    }


def callgrind(out: str) -> list[str]:
    """The command prefix that counts a process's instructions into ``out.N``, one part
    per ``os.getppid()`` mark (part N ends at the N-th mark)."""
    return ["valgrind", "--tool=callgrind", "--dump-before=getppid",
            f"--callgrind-out-file={out}"]  # fmt: skip


def summary(path: str) -> int:
    """The instructions counted in one callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def segments(out: str) -> list[int]:
    """Instructions of each dumped part of ``out``, in order (part k ends at the k-th mark)."""
    parts = [p for p in glob.glob(out + ".*") if p.rsplit(".", 1)[1].isdigit()]
    return [summary(p) for p in sorted(parts, key=lambda p: int(p.rsplit(".", 1)[1]))]


def source_tree(arg: str) -> Path:
    """An argparse type: a folder that holds the ``tmem`` package (a tree that is not
    there would quietly count the installed one instead)."""
    path = Path(arg)
    if not (path / "tmem" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{arg} holds no tmem package (no tmem/__init__.py)")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--src", type=source_tree, default=SRC, help="source tree to count")
    parser.add_argument("--compare", type=source_tree, help="a second source tree, counted too")
    parser.add_argument(
        "--engine-only", action="store_true", help="only the embedded host's phases"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    report: dict[str, object] = {"pages": args.pages, "src": str(args.src)}
    mine = count(args.src, args.pages, args.engine_only)
    report["instructions"] = mine
    if args.compare:
        report["compare"] = str(args.compare)
        other: dict[str, float] = count(args.compare, args.pages, args.engine_only)
        report["compare_instructions"] = other
    if args.json:
        print(json.dumps(report, indent=2))
        return
    head = f"{'phase':16} {'instructions':>12}"
    if args.compare:
        head += f" {'--compare':>12} {'ratio':>6}"
    print(f"user-space instructions per operation, {args.pages} pages per phase")
    print(head)
    for name in mine:
        line = f"{name:16} {mine[name]:12,.0f}"
        if args.compare:
            line += f" {other[name]:12,.0f} {mine[name] / other[name]:6.2f}"
        print(line)


if __name__ == "__main__":
    main()

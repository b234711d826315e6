"""Instructions in tmem per disk I/O saved in the main job, counted by callgrind.

``bench/tmem_cpu.py`` times the main job's tmem calls in CPU time, which a
loaded machine inflates by a factor of two or more.  This script counts
instructions instead, which load cannot move: it runs the default cleancache
job of ``tmem bench workload`` once for the configuration (its five guests as
threads of one embedded host), records every tmem call the guests make (the
page contents by value), and replays the first ``--calls`` of them, in the
order they were made, on a fresh host of the same configuration in one thread
of a child process under ``valgrind --tool=callgrind``.  The guests' calls do
not depend on tmem's answers (a cleancache guest offers every clean page it
evicts and asks tmem on every miss of its private cache), so the replay makes
the job's calls; only hits and misses may differ with the host's decisions.

It prints instructions per call and, times the calls per I/O saved of the
recorded run, instructions per I/O saved.  ``--compare DIR`` (repeatable)
replays the same calls against another source tree (say a ``git worktree``
of an older commit's ``src``) in the same run.  ``--answers`` also replays
them without callgrind on every tree and prints a digest of every answer
(each put's True/False, each get's page or None): equal digests mean the
trees made the same decision for every call.  ``--timed RUNS`` also replays
every recorded call (not only the first ``--calls``) on each tree, the trees
taking turns, in a fresh process without callgrind, with one CPU clock
around the whole replay: µs per call and per I/O saved with neither the
guests' own work between the calls nor a clock read per call (medians of
RUNS), beside ``bench/tmem_cpu.py``'s in-job figure.

Recording runs the job twice (a minute or more); ``--save FILE`` keeps the
recording and ``--recording FILE`` replays a saved one instead of running the
job again (the same calls, so trees measured on different days compare).
``--keep DIR`` keeps each tree's callgrind output of the replay in ``DIR``
(``<label>.out``), for ``callgrind_annotate`` to say where the instructions go.

    python bench/saved_io_instructions.py [--config tmem] [--calls 20000] [--compare DIR]
        [--answers] [--timed RUNS] [--save FILE | --recording FILE] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from instructions import callgrind, source_tree, summary  # noqa: E402

# Both replays start alike: the recording's host and clients, and its calls bound to them.
REPLAY = textwrap.dedent(
    """
    import hashlib, json, os, pickle, sys
    sys.path.insert(0, sys.argv[1])
    import tmem
    with open(sys.argv[2], "rb") as f:
        rec = pickle.load(f)
    host = tmem.Host(rec["capacity"], compress=rec["compress"], dedup=rec["dedup"])
    clients = {name: host.connect(name) for name in rec["clients"]}
    pages = rec["pages"]
    calls = []
    for name, op, args in rec["calls"][: int(sys.argv[3])]:
        if op == "put_page":
            args = (*args[:3], pages[args[3]])
        calls.append((op, getattr(clients[name], op), args))
    """
)

CHILD = REPLAY + textwrap.dedent(
    """
    os.getppid()  # callgrind dumps here: the set-up ends
    for _op, call, args in calls:
        call(*args)
    os.getppid()  # and here: the replay ends
    """
)

ANSWERS = REPLAY + textwrap.dedent(
    """
    digest, hits = hashlib.sha256(), 0
    for op, call, args in calls:
        answer = call(*args)
        if op == "get_page" and answer is not None:
            hits += 1
        digest.update(answer if type(answer) is bytes else repr(answer).encode())
    print(json.dumps({"digest": digest.hexdigest(), "hits": hits}))
    """
)

TIMED = REPLAY + textwrap.dedent(
    """
    import time
    start = time.thread_time_ns()
    for _op, call, args in calls:
        call(*args)
    print(json.dumps((time.thread_time_ns() - start) / len(calls) / 1000))
    """
)


def timed_us(src: Path, recording: Path, calls: int) -> float:
    """CPU µs per call of the first ``calls`` recorded calls replayed on ``src`` (one run)."""
    out = subprocess.run(
        [sys.executable, "-c", TIMED, str(src), str(recording), str(calls)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(json.loads(out.stdout))


def answers(src: Path, recording: Path, calls: int) -> dict[str, Any]:
    """A digest of the answers of the first ``calls`` recorded calls replayed on ``src``."""
    out = subprocess.run(
        [sys.executable, "-c", ANSWERS, str(src), str(recording), str(calls)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def record(config: str) -> dict[str, Any]:
    """Run the default cleancache job for ``private`` and ``config``; the tmem calls of
    ``config``'s run, its host's settings, and its I/Os saved against ``private``."""
    import tmem.workload.runner as runner
    from tmem.units import parse_size
    from tmem.workload import guest
    from tmem.workload.cli import DEFAULT_GUESTS, DEFAULT_PRIVATE_PAGES, DEFAULT_SPARE
    from tmem.workload.config import GuestSpec, WorkloadSpec
    from tmem.workload.report import summarize

    calls: list[tuple[str, str, tuple[Any, ...]]] = []
    pages: dict[bytes, int] = {}  # content -> its number (pages repeat)
    lock = threading.Lock()
    host_args: dict[str, Any] = {}
    timed, new_host = guest.TimedClient._timed, runner.new_host

    def timed_and_recorded(self: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
        logged = args
        if call.__name__ == "put_page":
            with lock:
                logged = (*args[:3], pages.setdefault(bytes(args[3]), len(pages)))
        result = timed(self, call, *args, **kwargs)
        with lock:  # in the order the calls return (the host's lock orders them)
            calls.append((self._client.name, call.__name__, logged))
        return result

    def host_of(config: Any, result: Any) -> Any:
        host_args.update(capacity=config.host_bytes, compress=config.compress, dedup=config.dedup)
        return new_host(config, result)

    guest.TimedClient._timed = timed_and_recorded  # type: ignore[method-assign]
    runner.new_host = host_of  # type: ignore[assignment]
    try:
        spec = WorkloadSpec(
            guests=tuple(GuestSpec.parse(g) for g in DEFAULT_GUESTS),
            private_pages=DEFAULT_PRIVATE_PAGES,
            spare_bytes=parse_size(DEFAULT_SPARE),
            scenario="cleancache",
            configurations=("private", config),
        )
        rows = summarize(runner.run_workload(spec))["configurations"]
    finally:
        guest.TimedClient._timed = timed  # type: ignore[method-assign]
        runner.new_host = new_host  # type: ignore[assignment]
    base, mine = rows[0]["total"], rows[1]["total"]
    saved = base["disk_reads"] + base["disk_writes"] - mine["disk_reads"] - mine["disk_writes"]
    by_number = [b""] * len(pages)
    for data, number in pages.items():
        by_number[number] = data
    return {
        **host_args,
        "clients": sorted({name for name, _, _ in calls}),
        "calls": calls,
        "pages": by_number,
        "saved_io": saved,
        "calls_per_saved": mine["tmem_calls"] / saved,
    }


def count(src: Path, recording: Path, calls: int, keep: Path | None = None) -> float:
    """Instructions per call of the first ``calls`` recorded calls, replayed on ``src``
    (the replay's callgrind output copied to ``keep`` if given)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            [*callgrind(out), sys.executable, "-c", CHILD, str(src), str(recording), str(calls)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        if keep is not None:
            shutil.copyfile(out + ".2", keep)
        return summary(out + ".2") / calls  # part 2: from the first mark to the second


def _first(rec: dict[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` calls, with only the pages they put (numbered again)."""
    numbers: dict[int, int] = {}
    calls = []
    for name, op, args in rec["calls"][:n]:
        if op == "put_page":
            args = (*args[:3], numbers.setdefault(args[3], len(numbers)))
        calls.append((name, op, args))
    pages = [b""] * len(numbers)
    for old, new in numbers.items():
        pages[new] = rec["pages"][old]
    return {"calls": calls, "pages": pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tmem", help="a workload configuration (tmem-lz4, ...)")
    parser.add_argument("--calls", type=int, default=20_000, help="calls replayed")
    parser.add_argument("--src", type=source_tree, default=SRC, help="source tree to count")
    parser.add_argument(
        "--compare", type=source_tree, action="append", default=[],
        help="another source tree, counted too (may be repeated)",
    )  # fmt: skip
    parser.add_argument(
        "--answers", action="store_true", help="also check every tree answers every call alike"
    )
    parser.add_argument(
        "--timed", type=int, default=0, metavar="RUNS",
        help="also time a replay of every recorded call on each tree, RUNS times in turn",
    )  # fmt: skip
    parser.add_argument("--save", type=Path, help="keep the recording in this file")
    parser.add_argument(
        "--recording", type=Path, help="replay this saved recording instead of running the job"
    )
    parser.add_argument("--keep", type=Path, help="keep the callgrind outputs in this folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    if args.recording is not None:
        with open(args.recording, "rb") as f:
            rec = pickle.load(f)
        args.config = rec.get("config", args.config)
    else:
        rec = record(args.config)
        rec["config"] = args.config
        if args.save is not None:
            with open(args.save, "wb") as f:
                pickle.dump(rec, f)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    n = min(args.calls, len(rec["calls"]))
    report: dict[str, Any] = {
        "config": args.config, "calls_replayed": n, "calls_recorded": len(rec["calls"]),
        "saved_io": rec["saved_io"], "calls_per_saved": rec["calls_per_saved"],
        "load": os.getloadavg()[0],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.pickle"
        with open(path, "wb") as f:
            pickle.dump({**rec, **_first(rec, n)}, f)
        trees = {"src": args.src}
        for k, tree in enumerate(args.compare):
            trees[f"compare{k + 1}" if len(args.compare) > 1 else "compare"] = tree
        for label, tree in trees.items():
            keep = None if args.keep is None else args.keep / f"{label}.out"
            per_call = count(tree, path, n, keep)
            report[label] = {
                "tree": str(tree),
                "instructions_per_call": per_call,
                "instructions_per_saved_io": per_call * rec["calls_per_saved"],
            }
            if args.answers:
                report[label]["answers"] = answers(tree, path, n)
        if args.timed:
            with open(path, "wb") as f:  # every call of the job this time
                pickle.dump(rec, f)
            runs: dict[str, list[float]] = {label: [] for label in trees}
            for k in range(args.timed):  # the trees take turns, the first one rotating
                order = list(trees)[k % len(trees) :] + list(trees)[: k % len(trees)]
                for label in order:
                    runs[label].append(timed_us(trees[label], path, len(rec["calls"])))
            for label, got in runs.items():
                per_call = statistics.median(got)
                report[label]["timed"] = {
                    "runs_us_per_call": got,
                    "us_per_call": per_call,
                    "us_per_saved_io": per_call * rec["calls_per_saved"],
                }
            report["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.config}: {rec['saved_io']:,} I/Os saved, {rec['calls_per_saved']:.2f} calls"
        f" each; the first {n:,} of {len(rec['calls']):,} calls replayed"
    )
    for label in trees:
        row = report[label]
        print(
            f"{label:8} {row['instructions_per_call']:10,.0f} instructions per call"
            f" {row['instructions_per_saved_io']:12,.0f} per I/O saved  ({row['tree']})"
        )
        if "answers" in row:
            got = row["answers"]
            print(f"{'':8} answers {got['digest'][:16]}, {got['hits']:,} hits")
        if "timed" in row:
            got = row["timed"]
            print(
                f"{'':8} replayed alone: {got['us_per_call']:.2f} µs per call,"
                f" {got['us_per_saved_io']:.2f} µs per I/O saved"
                f" (median of {len(got['runs_us_per_call'])})"
            )
    for label in list(trees)[1:]:
        ratio = report["src"]["instructions_per_call"] / report[label]["instructions_per_call"]
        print(f"src / {label}: {ratio:.3f}")


if __name__ == "__main__":
    main()

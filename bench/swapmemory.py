"""SwapMemory: µs per fault by where the page comes from, and numpy past the resident limit.

* **Faults.** numpy touches one byte per page (a C loop) of a region:
  never-written pages (zero fills, no eviction), pages evicted to tmem
  (an embedded host in the handler process, or a ``tmem serve`` daemon), and
  pages evicted to the swap file (``no_tmem``).  The evicted-page passes
  read pages whose eviction is clean (their stored copy is still true), so
  each fault costs one fill and one hole punched.  The reference is the
  kernel's own first-touch fault of ordinary anonymous memory in the same
  run.
* **numpy reduction** over an array 4x the resident limit: ``a[:] =
  arange`` then ``a.sum()`` three times, in ordinary memory, in SwapMemory
  (tmem embedded, daemon, swap file only), and in ordinary memory of a child
  process in a v1 memory cgroup whose limit is the same number of pages,
  with the kernel swapping to a swap file (``swapon`` for the run, then
  ``swapoff``).  Each configuration runs in a fresh child process, the order
  rotated over ``--rounds``; figures are medians and ratios to ordinary
  memory taken within the round.

    python bench/swapmemory.py [--resident 2048] [--rounds 3] [--no-kernel-swap] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import serving

_CHILD = """
import json, mmap, os, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
R, PS = cfg["resident"], mmap.PAGESIZE
n = 4 * R * PS // 8
out = {}
if cfg["where"] == "ordinary":
    buf = mmap.mmap(-1, 4 * R * PS)
    mem = None
elif cfg["where"] == "kernel-swap":
    with open(cfg["cgroup"] + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
    buf = mmap.mmap(-1, 4 * R * PS)
    mem = None
else:
    from tmem.frontends import SwapMemory
    kw = {"embedded": 1 << 30} if cfg["where"] == "embedded" else (
        {"address": cfg["address"]} if cfg["where"] == "daemon" else {"no_tmem": True})
    mem = SwapMemory(4 * R * PS, R, **kw)
    buf = mem.buffer
a = np.frombuffer(buf, dtype=np.int64)
step = PS // 8
if cfg["mode"] == "faults":
    if mem is None:
        t = time.perf_counter(); int(a[::step].sum()); out["zero"] = time.perf_counter() - t
    else:
        t = time.perf_counter(); int(a[: R * step : step].sum())
        out["zero"] = time.perf_counter() - t           # R zero fills, no eviction
        a[:] = 1                                         # 4R dirty pages, 3R stored
        int(a[: 2 * R * step : step].sum())              # pages 0..2R back, 2R..4R stored
        t = time.perf_counter(); int(a[2 * R * step :: step].sum())
        out["evicted"] = time.perf_counter() - t         # 2R fills, clean evictions
        out["stats"] = mem.stats()
    out["pages"] = {"zero": R if mem else 4 * R, "evicted": 2 * R}
else:
    t = time.perf_counter()
    a[:] = np.arange(n, dtype=np.int64)
    out["fill"] = time.perf_counter() - t
    sums = []
    t = time.perf_counter()
    for _ in range(3):
        sums.append(int(a.sum()))
    out["sum"] = (time.perf_counter() - t) / 3
    assert sums == [n * (n - 1) // 2] * 3, sums
    if mem is not None:
        out["stats"] = mem.stats()
del a
if mem is not None:
    mem.close()
print(json.dumps(out))
"""


def child(cfg: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), json.dumps(cfg)],
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"{cfg['where']} {cfg['mode']} failed: {r.stderr[-2000:]}")
    result: dict = json.loads(r.stdout)
    return result


def daemon(directory: Path) -> contextlib.AbstractContextManager[str]:
    """A 1 GiB daemon holding plain pages."""
    return serving.daemon(directory, "--capacity", "1G", "--compress", "none")


@contextlib.contextmanager
def kernel_swap(directory: Path, resident: int) -> Iterator[str]:
    """A swap file turned on for the block, and a memory cgroup of ``resident`` pages."""
    swap = directory / "swapfile"
    size_mb = 4 * resident * os.sysconf("SC_PAGE_SIZE") // 2**20 * 2 + 16
    subprocess.run(["dd", "if=/dev/zero", f"of={swap}", "bs=1M", f"count={size_mb}",
                    "status=none"], check=True)  # fmt: skip
    os.chmod(swap, 0o600)
    subprocess.run(["mkswap", str(swap)], check=True, capture_output=True)
    subprocess.run(["swapon", str(swap)], check=True)
    memcg = Path("/sys/fs/cgroup/memory")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        if "memory" in ctrl.split(","):
            memcg = memcg / path.lstrip("/")
    group = memcg / f"tmem-bench-swap-{os.getpid()}"
    group.mkdir()
    try:
        # New pages are charged here; the child's earlier memory stays where it was.
        (group / "memory.limit_in_bytes").write_text(str(resident * os.sysconf("SC_PAGE_SIZE")))
        (group / "memory.swappiness").write_text("100")
        yield str(group)
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run(["swapoff", str(swap)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resident", type=int, default=2048, help="resident pages")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-kernel-swap", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    report: dict = {"args": vars(args), "load_before": load, "faults": {}, "numpy": {}}
    with tempfile.TemporaryDirectory(prefix="tmem-bench-swap-", dir="/var/tmp") as d:
        stack = contextlib.ExitStack()
        with stack:
            address = stack.enter_context(daemon(Path(d)))
            cgroup = None if args.no_kernel_swap else stack.enter_context(
                kernel_swap(Path(d), args.resident))  # fmt: skip
            base = {"resident": args.resident, "address": address, "cgroup": cgroup}
            fault_where = ["ordinary", "embedded", "daemon", "swap-file"]
            numpy_where = ["ordinary", "embedded", "daemon", "swap-file"]
            if cgroup:
                numpy_where.append("kernel-swap")
            faults: dict[str, list[dict]] = {w: [] for w in fault_where}
            numbers: dict[str, list[dict]] = {w: [] for w in numpy_where}
            for r in range(args.rounds):
                for w in fault_where[r % 4 :] + fault_where[: r % 4]:
                    faults[w].append(child(dict(base, where=w, mode="faults")))
                k = r % len(numpy_where)
                for w in numpy_where[k:] + numpy_where[:k]:
                    numbers[w].append(child(dict(base, where=w, mode="numpy")))
    report["load_after"] = os.getloadavg()[0]
    for w, runs in faults.items():
        row = {}
        for kind in ("zero", "evicted"):
            if kind in runs[0]:
                row[kind] = statistics.median(x[kind] / x["pages"][kind] * 1e6 for x in runs)
        report["faults"][w] = row
    for w, runs in numbers.items():
        report["numpy"][w] = {
            "fill": statistics.median(x["fill"] for x in runs),
            "sum": statistics.median(x["sum"] for x in runs),
            "fill_ratio": statistics.median(
                x["fill"] / o["fill"] for x, o in zip(runs, numbers["ordinary"], strict=True)),
            "sum_ratio": statistics.median(
                x["sum"] / o["sum"] for x, o in zip(runs, numbers["ordinary"], strict=True)),
            "stats": runs[-1].get("stats"),
        }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=1))
        return
    ps = os.sysconf("SC_PAGE_SIZE")
    print(f"load {report['load_before']:.1f} -> {report['load_after']:.1f}; resident "
          f"{args.resident} pages, array {4 * args.resident * ps >> 20} MiB; "
          f"{args.rounds} rounds")  # fmt: skip
    print("\n| fault served | µs per fault (zero page) | µs per fault (evicted page) |")
    print("|---|---|---|")
    names = {"ordinary": "kernel, ordinary memory", "embedded": "SwapMemory, tmem embedded",
             "daemon": "SwapMemory, tmem daemon", "swap-file": "SwapMemory, swap file only"}
    for w, row in report["faults"].items():
        ev = f"{row['evicted']:.1f}" if "evicted" in row else "-"
        print(f"| {names[w]} | {row['zero']:.1f} | {ev} |")
    names["kernel-swap"] = "kernel swap to a file, memory cgroup of the same limit"
    print("\n| numpy, array 4x the resident limit | fill s | sum s | fill / ordinary "
          "| sum / ordinary |")  # fmt: skip
    print("|---|---|---|---|---|")
    for w, row in report["numpy"].items():
        print(f"| {names[w]} | {row['fill']:.3f} | {row['sum']:.4f} | {row['fill_ratio']:.1f} "
              f"| {row['sum_ratio']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()

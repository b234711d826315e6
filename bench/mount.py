"""``tmem mount`` against the disk and the kernel's page cache, and in a memory-capped cgroup.

Three measurements, all with a real ``tmem serve`` daemon and real mounts:

* **random 4 KiB reads** of a file ``--file-mb`` large through a mount whose
  private cache is ``--cache-mb`` (so reads are served by the host), against
  the same reads of the source file from the disk (``O_DIRECT``), from the
  kernel's page cache, and through a mount without tmem (private cache, then
  disk).  Each round reads ``--reads`` new random pages (more than the
  private cache holds) by every method once, the order rotated; the figure
  is the median over rounds of µs per read, and each method's ratio to the
  disk read taken within the round.
* **sequential reads** (1 MiB) of the same file: the source cold and warm,
  the mount cold (from the disk) and warm (from the host).
* **a memory-capped cgroup** (v1 ``memory.limit_in_bytes`` = ``--limit-mb``)
  that reads a data set twice its limit twice, straight from the source and
  through the mount (the mount and the daemon outside the cap).  Disk reads
  are the ``read_bytes`` of ``/proc/PID/io`` of the reader and of the mount
  process (what they made the storage layer fetch).

    python bench/mount.py [--file-mb 64] [--cache-mb 4] [--reads 3000] [--rounds 5]
                          [--limit-mb 64] [--dir /var/tmp] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import serving

import tmem

PAGE = 4096
MEMCG = Path("/sys/fs/cgroup/memory")


def own_memcg() -> Path:
    """This process's v1 memory cgroup directory."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        if "memory" in ctrl.split(","):
            return MEMCG / path.lstrip("/")
    raise SystemExit("no v1 memory cgroup here")


def drop(path: Path) -> None:
    """Drop ``path``'s pages from the kernel's page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def daemon(directory: Path, capacity: str) -> contextlib.AbstractContextManager[str]:
    """A daemon of ``capacity`` holding plain pages."""
    return serving.daemon(directory, "--capacity", capacity, "--compress", "none",
                          "--log-level", "warning")  # fmt: skip


@contextlib.contextmanager
def mounted(src: Path, mnt: Path, *options: str) -> Iterator[subprocess.Popen]:
    mnt.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "tmem.cli", "mount", str(src), str(mnt), *options]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"tmem mount did not mount: {cmd}")
            time.sleep(0.05)
        yield proc
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False, timeout=30)
        proc.terminate()
        proc.wait(20)


def random_reads(path: Path, offsets: list[int], direct: bool = False) -> float:
    """µs per 4 KiB ``pread`` at ``offsets``."""
    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags)
    buf = mmap.mmap(-1, PAGE)  # page-aligned, as O_DIRECT needs
    try:
        start = time.perf_counter()
        for off in offsets:
            if os.preadv(fd, [buf], off) != PAGE:
                raise SystemExit(f"short read at {off}")
        return (time.perf_counter() - start) / len(offsets) * 1e6
    finally:
        os.close(fd)
        buf.close()


def sequential(path: Path) -> float:
    """MB/s reading ``path`` whole in 1 MiB reads."""
    fd = os.open(path, os.O_RDONLY)
    total = 0
    try:
        start = time.perf_counter()
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
        return total / (time.perf_counter() - start) / 1e6
    finally:
        os.close(fd)


def median_rounds(methods: dict[str, Callable[[], float]], rounds: int, ref: str) -> dict:
    """Run every method once per round, the order rotated; medians and ratios to ``ref``.

    A method named in parentheses runs first in every round and is not reported.
    """
    setup = [n for n in methods if n.startswith("(")]
    names = [n for n in methods if n not in setup]
    values: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in setup:
            methods[n]()
        order = names[r % len(names) :] + names[: r % len(names)]
        got = {n: methods[n]() for n in order}
        for n in names:
            values[n].append(got[n])
            ratios[n].append(got[n] / got[ref])
    return {
        n: {"value": statistics.median(values[n]), "ratio": statistics.median(ratios[n]),
            "all": values[n]}  # fmt: skip
        for n in names
    }


def bench_reads(args: argparse.Namespace, root: Path, address: str) -> dict:
    src, data = root / "src", root / "src" / "data.bin"
    size = args.file_mb << 20
    rng = random.Random(1)
    offsets: list[int] = []

    def new_offsets() -> float:  # each round reads other pages, more than the private cache
        offsets[:] = [rng.randrange(size // PAGE) * PAGE for _ in range(args.reads)]
        return 1.0
    cache = f"{args.cache_mb}M"
    out: dict = {}
    with (
        mounted(src, root / "mnt", "--host", address, "--cache-size", cache),
        mounted(src, root / "plain", "--no-tmem", "--cache-size", cache),
    ):
        subprocess.run(["cat", str(root / "mnt" / "data.bin")], stdout=subprocess.DEVNULL,
                       check=True)  # fmt: skip  # the host now holds the file

        def disk() -> float:
            drop(data)
            return random_reads(data, offsets, direct=True)

        def page_cache() -> float:
            sequential(data)  # warm
            return random_reads(data, offsets)

        def through_tmem() -> float:
            return random_reads(root / "mnt" / "data.bin", offsets)

        def no_tmem() -> float:
            drop(data)
            return random_reads(root / "plain" / "data.bin", offsets)

        out["random"] = median_rounds(
            {"(new offsets)": new_offsets, "disk (O_DIRECT)": disk, "kernel page cache": page_cache,
             "mount, served by tmem": through_tmem, "mount without tmem": no_tmem},
            args.rounds, "disk (O_DIRECT)",
        )  # fmt: skip
        with tmem.admin(address, timeout=10) as admin:
            host = admin.stats()
        out["host"] = {k: host[k] for k in ("gets", "succ_gets", "puts", "succ_puts", "pages")}

    def source_cold() -> float:
        drop(data)
        return sequential(data)

    def source_warm() -> float:
        sequential(data)
        return sequential(data)

    def mount_cold() -> float:
        drop(data)
        with mounted(src, root / "seq", "--no-tmem", "--cache-size", cache):
            return sequential(root / "seq" / "data.bin")

    def mount_warm() -> float:
        with mounted(src, root / "seq", "--host", address, "--cache-size", cache,
                     "--name", "seq"):  # fmt: skip
            sequential(root / "seq" / "data.bin")  # fills the host
            return sequential(root / "seq" / "data.bin")

    out["sequential"] = median_rounds(
        {"source, cold": source_cold, "source, page cache": source_warm,
         "mount, from the disk": mount_cold, "mount, from tmem": mount_warm},
        max(3, args.rounds // 2), "source, cold",
    )  # fmt: skip
    return out


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A v1 memory cgroup below this process's, capped at ``limit`` bytes."""
    mem = own_memcg() / f"tmem-bench-{os.getpid()}"
    mem.mkdir()
    try:
        (mem / "memory.limit_in_bytes").write_text(str(limit))
        yield mem
    finally:
        for _ in range(50):
            try:
                mem.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def read_bytes(pid: int) -> int:
    """Bytes process ``pid`` (all its threads) made the storage layer fetch."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise SystemExit("no read_bytes in /proc/PID/io")


_READER = """
import sys
for name in sys.argv[1:]:
    with open(name, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
print(open("/proc/self/io").read().split("read_bytes:")[1].split()[0])
"""


def capped_read(files: list[Path], mem: Path, helper: int | None) -> tuple[float, int]:
    """Wall seconds and disk bytes of a reader of ``files`` inside the memory cgroup.

    Disk bytes are the reader's ``read_bytes`` plus the growth of the
    ``helper`` process's (the mount, which reads the source for it).
    """
    before = read_bytes(helper) if helper else 0
    script = f'echo $$ > {mem}/cgroup.procs && p="$0" && c="$1" && shift && exec "$p" -c "$c" "$@"'
    start = time.perf_counter()
    r = subprocess.run(["sh", "-c", script, sys.executable, _READER, *map(str, files)],
                       check=True, timeout=900, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    own = int(r.stdout.split()[-1])
    return wall, own + (read_bytes(helper) - before if helper else 0)


def bench_cgroup(args: argparse.Namespace, root: Path, address: str) -> dict:
    limit = args.limit_mb << 20
    src = root / "set"
    src.mkdir()
    files = []
    for i in range(4):  # twice the limit, in four files
        f = src / f"part{i}"
        with open(f, "wb") as out:
            for _ in range(limit // 2 // (1 << 20)):
                out.write(os.urandom(1 << 20))
        files.append(f)
    result: dict = {}
    with memory_cgroup(limit) as mem:
        for f in files:
            drop(f)
        result["direct"] = [capped_read(files, mem, None) for _ in range(2)]
        for f in files:
            drop(f)
        with mounted(src, root / "cg", "--host", address, "--cache-size",
                     f"{args.cache_mb}M", "--name", "cgroup") as proc:  # fmt: skip
            through = [root / "cg" / f.name for f in files]
            result["mount"] = [capped_read(through, mem, proc.pid) for _ in range(2)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file-mb", type=int, default=64)
    parser.add_argument("--cache-mb", type=int, default=4)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit-mb", type=int, default=64)
    parser.add_argument("--dir", default="/var/tmp", help="a directory on a real disk")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tmem-bench-mount-", dir=args.dir))
    try:
        (root / "src").mkdir()
        with open(root / "src" / "data.bin", "wb") as out:
            for _ in range(args.file_mb):
                out.write(os.urandom(1 << 20))
        load = os.getloadavg()[0]
        capacity = f"{max(args.file_mb, args.limit_mb * 2) * 3}M"
        with daemon(root, capacity) as address:
            reads = bench_reads(args, root, address)
            capped = bench_cgroup(args, root, address)
        report = {"reads": reads, "cgroup": capped, "load_before": load,
                  "load_after": os.getloadavg()[0], "args": vars(args)}  # fmt: skip
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            print_report(report)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def print_report(r: dict) -> None:
    a = r["args"]
    print(f"load {r['load_before']:.1f} -> {r['load_after']:.1f}; file {a['file_mb']} MiB, "
          f"private cache {a['cache_mb']} MiB, {a['reads']} reads x {a['rounds']} rounds")
    print("\n| random 4 KiB reads | µs per read | ratio to the disk (in-round median) |")
    print("|---|---|---|")
    for name, v in r["reads"]["random"].items():
        print(f"| {name} | {v['value']:.1f} | {v['ratio']:.3f} |")
    print(f"\nhost: {r['reads']['host']}")
    print("\n| sequential 1 MiB reads | MB/s | ratio to the cold source |")
    print("|---|---|---|")
    for name, v in r["reads"]["sequential"].items():
        print(f"| {name} | {v['value']:.0f} | {v['ratio']:.3f} |")
    print(f"\n| cgroup capped at {a['limit_mb']} MiB, {2 * a['limit_mb']} MiB read twice "
          "| pass 1 s | pass 1 disk MiB | pass 2 s | pass 2 disk MiB |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, passes in (("straight from the source", r["cgroup"]["direct"]),
                         ("through tmem mount", r["cgroup"]["mount"])):  # fmt: skip
        (t1, d1), (t2, d2) = passes
        print(f"| {name} | {t1:.2f} | {d1 / 2**20:.0f} | {t2:.2f} | {d2 / 2**20:.0f} |")


if __name__ == "__main__":
    main()

"""Programs that put memory under pressure on purpose, for end-to-end runs in cgroups.

``python -m tmem.workload.pressure competitor`` allocates memory step by step
(touching every page), holds it, frees it and exits 0: a competing process.

``python -m tmem.workload.pressure guest`` reads a file page by page through
a :class:`~tmem.frontends.CleanCache` whose private cache self-balloons
(:class:`~tmem.frontends.SelfBalloon`) under its memory cgroup's limit, with
a tmem daemon behind it.  It checks every page it reads and prints one JSON
line of counters per balloon step; a wrong page exits 1.  Pages are
``page_bytes(i)``, so the reader knows what each must hold.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

PAGE = 4096


def page_bytes(index: int) -> bytes:
    """What page ``index`` of a guest's file holds."""
    return (b"%015d\n" % index) * (PAGE // 16)


def write_file(path: Path, pages: int) -> None:
    """A file of ``pages`` pages, page ``i`` holding :func:`page_bytes`."""
    with open(path, "wb") as fh:
        for i in range(pages):
            fh.write(page_bytes(i))


def rss() -> int:
    """This process's resident bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


#: One auto-size step as the daemon logs it (tmem.daemon.autosize).
STEP_LINE = re.compile(
    r"autosize (\w+): available=(\d+) total=(\d+) pressure=(\S+) wanted=(\d+) "
    r"capacity=(\d+)->(\d+) held=(\d+)->(\d+)"
)


def parse_steps(log: str) -> list[dict[str, Any]]:
    """The auto-size steps a daemon's log shows (those logged: changes at ``info``)."""
    steps = []
    for line in log.splitlines():
        m = STEP_LINE.search(line)
        if m:
            steps.append(
                {
                    "reason": m.group(1),
                    "available": int(m.group(2)),
                    "total": int(m.group(3)),
                    "wanted": int(m.group(5)),
                    "capacity": (int(m.group(6)), int(m.group(7))),
                    "held": (int(m.group(8)), int(m.group(9))),
                }
            )
    return steps


def fill_host(client: Any, target: int, admin: Any, timeout: float = 30.0) -> int:
    """Put ephemeral pages through ``client`` until the host holds ``target`` bytes (or
    ``timeout`` passes); return the bytes it holds."""
    pool, i = client.new_pool(), 0
    deadline = time.monotonic() + timeout
    held = admin.stats()["bytes"]
    while held < target and time.monotonic() < deadline:
        for _ in range(512):
            client.put_page(pool, 1, i, i.to_bytes(8, "little") * (PAGE // 8))
            i += 1
        held = admin.stats()["bytes"]
    return held


def competitor(mib: int, step_mib: int, every: float, hold: float) -> None:
    """Allocate ``mib`` MiB, ``step_mib`` at a time every ``every`` seconds; hold; free."""
    chunks: list[bytearray] = []
    while len(chunks) * step_mib < mib:
        chunk = bytearray(step_mib << 20)
        for offset in range(0, len(chunk), PAGE):
            chunk[offset] = 1  # touch every page: really resident
        chunks.append(chunk)
        print(json.dumps({"allocated_mib": len(chunks) * step_mib, "rss": rss()}), flush=True)
        time.sleep(every)
    time.sleep(hold)
    chunks.clear()
    print(json.dumps({"freed": True, "rss": rss()}), flush=True)


def guest(
    address: str,
    path: Path,
    pages: int,
    cache_pages: int,
    interval: float,
    seconds: float,
    reserved: int,
) -> int:
    """Read ``path`` cyclically for ``seconds``; return the exit status (1: a wrong page)."""
    import tmem
    from tmem.control import BalloonTunables
    from tmem.frontends import CleanCache, SelfBalloon
    from tmem.frontends.balloon import cgroup_headroom

    client = tmem.connect(address, name=f"guest-{path.name}")
    cache = CleanCache(client, cache_pages=cache_pages)
    cache.enable(path)
    balloon = SelfBalloon(
        cache, BalloonTunables(interval=interval), headroom=cgroup_headroom(), reserved=reserved
    )
    end = time.monotonic() + seconds
    next_step = time.monotonic() + interval
    index = 0
    with cache.open(path) as fh:
        while time.monotonic() < end:
            fh.seek(index * PAGE)
            if fh.read(PAGE) != page_bytes(index):
                print(json.dumps({"error": f"wrong page {index}"}), flush=True)
                return 1
            index = (index + 1) % pages
            if time.monotonic() >= next_step:
                next_step += interval
                size = balloon.step()
                stats = cache.stats()
                report = {k: stats[k] for k in ("reads", "private_hits", "succ_gets", "disk_reads")}
                report.update(cache_pages=size, private_pages=stats["private_pages"], rss=rss())
                print(json.dumps(report), flush=True)
    cache.close()
    client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the program named by the first argument."""
    parser = argparse.ArgumentParser(prog="python -m tmem.workload.pressure")
    sub = parser.add_subparsers(dest="program", required=True)
    comp = sub.add_parser("competitor", help="allocate, hold and free memory")
    comp.add_argument("--mib", type=int, required=True)
    comp.add_argument("--step-mib", type=int, default=16)
    comp.add_argument("--every", type=float, default=0.1)
    comp.add_argument("--hold", type=float, default=1.0)
    g = sub.add_parser("guest", help="read a file through a self-ballooning cleancache")
    g.add_argument("--address", required=True)
    g.add_argument("--file", type=Path, required=True)
    g.add_argument("--pages", type=int, required=True)
    g.add_argument("--cache-pages", type=int, required=True)
    g.add_argument("--interval", type=float, default=0.1)
    g.add_argument("--seconds", type=float, required=True)
    g.add_argument("--reserved", type=int, default=8 << 20)
    args = parser.parse_args(argv)
    if args.program == "competitor":
        competitor(args.mib, args.step_mib, args.every, args.hold)
        return 0
    return guest(
        args.address,
        args.file,
        args.pages,
        args.cache_pages,
        args.interval,
        args.seconds,
        args.reserved,
    )


if __name__ == "__main__":
    sys.exit(main())

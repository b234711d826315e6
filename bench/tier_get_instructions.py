"""Instructions per get of a page on the SSD tier, as a serving host runs it.

``bench/instructions.py``'s ``ssd_tier_get`` counts a get with its promotion
back to RAM done at once (a host without its thread).  A serving host has
its thread, and a get only queues the promotion: this counts that get, the
calling thread's user-space instructions only (callgrind, one part per
thread), beside the uncached 4 KiB read it replaces (``O_DIRECT`` into a
buffer and a copy out of it).  The load cannot move these figures.

With ``--cluster`` it counts a get of a page on the Redis Cluster tier
instead (a cluster of three primaries and their replicas started here, on
loopback), beside a plain ``GET`` of the same lz4 page from its primary with
``redis.Redis`` (and lz4 after it), in the same process.

    python bench/tier_get_instructions.py [--pages 1000] [--src DIR] [--compare DIR]
                                          [--cluster] [--json]
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
sys.path.insert(0, str(HERE))

from instructions import SRC, source_tree, summary  # noqa: E402

CHILD = textwrap.dedent(
    """
    import mmap, os, random, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    import tmem
    n = int(sys.argv[2])
    PAGE = 4096
    pages = [random.Random(i).randbytes(PAGE // 2) + bytes(PAGE // 2) for i in range(n)]
    order = list(range(n))
    random.Random(1).shuffle(order)
    where = tempfile.mkdtemp(prefix="tmem-tier-instructions-")
    host = tmem.Host(256 << 20, compress="lz4", dedup=None, tiers=[f"ssd:{where}:{64 << 20}"])
    client = host.connect("bench")
    pool = client.new_pool(persistent=True)
    for i, data in enumerate(pages):
        client.put_page(pool, 1, i, data)
    assert host.demote(all_pages=True) == n
    get = client.get_page
    os.getppid()  # part 1 ends: set-up
    for i in order:
        assert get(pool, 1, i) == pages[i]
    os.getppid()  # part 2 ends: the gets
    assert host.stats()["tiering"]["tier_hits"] == n
    host.close()
    path = os.path.join(where, "reference")
    with open(path, "wb") as f:
        f.write(b"".join(pages))
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, PAGE)
    os.getppid()  # part 3 ends: the tier's close and the file
    for i in order:
        os.preadv(fd, [buf], i * PAGE)
        assert buf[:] == pages[i]
    os.getppid()  # part 4 ends: the reads
    os.close(fd)
    os.unlink(path)
    os.rmdir(where)
    """
)


CLUSTER_CHILD = textwrap.dedent(
    """
    import os, random, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[3])  # the checkout: tests.rediscluster
    import lz4.block
    from redis.cluster import RedisCluster
    import tmem
    from tests.rediscluster import LocalCluster
    n = int(sys.argv[2])
    PAGE = 4096
    pages = [random.Random(i).randbytes(PAGE // 2) + bytes(PAGE // 2) for i in range(n + 1)]
    cluster = LocalCluster()
    try:
        keys = [f"bench:{{ref}}:{i}" for i in range(n + 1)]
        routing = RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=5)
        plain = routing.get_redis_connection(routing.get_node_from_key(keys[0]))
        pipe = plain.pipeline(transaction=False)
        for key, data in zip(keys, pages):
            pipe.set(key, lz4.block.compress(data))
        pipe.execute()
        host = tmem.Host(256 << 20, compress="lz4", dedup=None, tiers=[cluster.spec])
        client = host.connect("bench")
        pool = client.new_pool(persistent=True)
        for i, data in enumerate(pages):
            client.put_page(pool, 1, i, data)
        while host.demote(all_pages=True):
            pass
        get, rget, decompress = client.get_page, plain.get, lz4.block.decompress
        assert get(pool, 1, n) == pages[n] and decompress(rget(keys[n])) == pages[n]  # warm
        os.getppid()  # part 1 ends: set-up
        for i in range(n):
            assert get(pool, 1, i) == pages[i]
        os.getppid()  # part 2 ends: the tier's gets
        for i in range(n):
            assert decompress(rget(keys[i])) == pages[i]
        os.getppid()  # part 3 ends: the plain GETs
        assert host.stats()["tiering"]["tier_hits"] == n + 1
        host.close()
        routing.close()
    finally:
        cluster.stop()
    """
)


def count(src: Path, pages: int, cluster: bool = False) -> dict[str, float]:
    """The calling thread's instructions per SSD tier get and per disk read; with
    ``cluster``, per cluster tier get and per plain ``GET``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        child = [CLUSTER_CHILD, str(src), str(pages), str(HERE.parent)] if cluster else [
            CHILD, str(src), str(pages)]  # fmt: skip
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=getppid", "--separate-threads=yes",
             f"--callgrind-out-file={out}", sys.executable, "-c", *child],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        # The main thread's parts are out.N-01 (N = 1, 2, ...): part 2 the gets, then part 4
        # the reads (part 3 with --cluster: the plain GETs).
        parts = {int(p.rsplit(".", 1)[1].split("-")[0]): p for p in glob.glob(out + ".*-01")}
        if cluster:
            return {
                "cluster_tier_get": summary(parts[2]) / pages,
                "redis_py_get": summary(parts[3]) / pages,
            }
        return {
            "ssd_tier_get": summary(parts[2]) / pages,
            "disk_read_4k": summary(parts[4]) / pages,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--src", type=source_tree, default=SRC, help="source tree to count")
    parser.add_argument("--compare", type=source_tree, help="a second source tree, counted too")
    parser.add_argument(
        "--cluster", action="store_true", help="the Redis Cluster tier's get instead"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    report: dict[str, object] = {"pages": args.pages, "src": str(args.src)}
    report["instructions"] = mine = count(args.src, args.pages, args.cluster)
    if args.compare:
        report["compare"] = str(args.compare)
        report["compare_instructions"] = count(args.compare, args.pages, args.cluster)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, value in mine.items():
        line = f"{name:16} {value:10,.0f}"
        if args.compare:
            other = report["compare_instructions"][name]  # type: ignore[index]
            line += f"   --compare {other:10,.0f}   ratio {value / other:5.2f}"
        print(line)


if __name__ == "__main__":
    main()

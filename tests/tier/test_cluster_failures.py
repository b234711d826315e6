"""The Redis tier when machines fail: a primary killed under load, the whole cluster gone.

One cluster for the module; the tests run in order (the last one stops it).
"""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest

import tmem
from tests.rediscluster import LocalCluster

PAGE = 4096


@pytest.fixture(scope="module")
def cluster():  # its own: these tests kill nodes
    made = LocalCluster()
    yield made
    made.stop()


def page(n: int, version: int = 0) -> bytes:
    return random.Random(n * 1000 + version).randbytes(PAGE // 2) + bytes(PAGE // 2)


def test_a_primary_killed_under_load_loses_no_persistent_page_and_returns_no_stale_one(cluster):
    spec = cluster.spec + "?fetch-timeout=15&wait-timeout=0.3"
    host = tmem.Host(512 << 10, tiers=[spec])  # the demoter runs in the background
    try:
        client = host.connect("vm1")
        pers, eph = client.new_pool(persistent=True), client.new_pool(shared=False)
        latest: dict[int, int] = {}  # persistent page -> version accepted last
        eph_latest: dict[int, int] = {}
        rng = random.Random(1)

        def put(i: int) -> None:
            v = latest.get(i, -1) + 1
            if client.put_page(pers, 1, i, page(i, v)):
                latest[i] = v
            else:
                latest.pop(i, None)  # a refused duplicate put flushes the old page
            ev = rng.randrange(1000)
            if client.put_page(eph, 1, i, page(i, 5000 + ev)):
                eph_latest[i] = ev

        for i in range(300):
            put(i)
        host.demote(all_pages=True)  # beside the background demoter: most pages go remote
        assert host.stats()["tiering"]["tier_pages"][0] >= 200
        victim = cluster.primaries()[0]
        stop = threading.Event()
        killer = threading.Timer(0.2, cluster.kill, (victim,))
        killer.start()
        try:
            # Under load: overwrite old pages, add new ones and read others while the
            # primary dies and its replica takes over.
            deadline = time.monotonic() + 6
            n = 0
            while time.monotonic() < deadline and not stop.is_set():
                i = rng.randrange(400)
                put(i)
                j = rng.randrange(400)
                got = client.get_page(pers, 1, j)
                assert got == (page(j, latest[j]) if j in latest else None)
                got = client.get_page(eph, 1, j)  # destructive: the handle empties
                assert got is None or got == page(j, 5000 + eph_latest[j])
                eph_latest.pop(j, None)
                n += 1
        finally:
            killer.join()
        assert n > 50
        cluster.wait_ready(3, 0)
        for i, v in latest.items():
            assert client.get_page(pers, 1, i) == page(i, v), i
        stats = host.stats()
        assert stats["tiering"]["tier_lost"] == 0
        assert stats["tiers"][0]["load_retries"] + stats["tiers"][0]["write_failures"] > 0
    finally:
        host.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_leaves_the_host_serving_from_ram():
    spec = f"redis://127.0.0.1:{free_port()}?fetch-timeout=0.3&retry-interval=0.1"
    host = tmem.Host(256 << 10, tiers=[spec], demote_in_background=False)
    try:
        client = host.connect("vm1")
        pool = client.new_pool(persistent=True)
        accepted = [i for i in range(200) if client.put_page(pool, 1, i, page(i))]
        assert 40 < len(accepted) < 200  # RAM alone: the rest is refused
        assert host.demote(all_pages=True) == 0
        tier = host.stats()["tiers"][0]
        assert tier["healthy"] is False and "Connection" in tier["failure"]
        assert all(client.get_page(pool, 1, i) == page(i) for i in accepted)
    finally:
        host.close()


def remote(host: tmem.Host, pool: int) -> list[int]:
    """Indexes of object 1's pages in ``pool`` of vm1 that the tier holds."""
    engine = host.engine
    pages = engine.clients["vm1"].pools[pool].objs[1]
    return sorted(i for i, pid in pages.items() if engine.table.tier[pid])


def test_a_cluster_lost_after_demotion_gives_misses_and_clear_errors_never_wrong_pages(cluster):
    spec = cluster.spec + "?fetch-timeout=0.5&retry-interval=0.2"
    host = tmem.Host(1 << 20, tiers=[spec], demote_in_background=False)
    try:
        client = host.connect("vm1")
        pers, eph = client.new_pool(persistent=True), client.new_pool()
        for i in range(20):
            client.put_page(pers, 1, i, page(i))
            client.put_page(eph, 1, i, page(100 + i))
        # Each batch goes to one shard; the one left without a replica by the test above
        # refuses persistent pages, so demote until some went elsewhere.
        for _ in range(30):
            host.demote(all_pages=True)
            remote_p, remote_e = remote(host, pers), remote(host, eph)
            if remote_p and remote_e:
                break
        assert remote_p and remote_e
        demoted = host.stats()["tiering"]["tier_pages"][0]
        cluster.stop()
        with pytest.raises(tmem.TierError):
            client.get_page(pers, 1, remote_p[0])
        assert client.get_page(eph, 1, remote_e[0]) is None
        assert client.get_page(eph, 1, remote_e[0]) is None  # get-get
        # Local service goes on: new pages are stored and come back.
        assert client.put_page(pers, 2, 0, page(500))
        assert client.get_page(pers, 2, 0) == page(500)
        stats = host.stats()
        assert stats["tiering"]["tier_failures"] >= 2 and demoted >= 21
        assert stats["clients"]["vm1"]["tier_failures"] >= 2
    finally:
        host.close()

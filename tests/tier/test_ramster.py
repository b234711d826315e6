"""RAMster on a real Redis Cluster (three primaries, one replica each, on loopback)."""

from __future__ import annotations

import os
import random
import time

import pytest
import redis

import tmem
from tmem.tier.base import Demotion
from tmem.tier.ramster import ClusterTier, _Primary

PAGE = 4096


@pytest.fixture
def tier(cluster):
    made = ClusterTier(cluster.nodes)
    yield made
    made.close()


def blob(seed: int, size: int = 2000) -> bytes:
    return random.Random(seed).randbytes(size)


def page(n: int) -> bytes:
    return random.Random(n).randbytes(PAGE // 2) + bytes(PAGE // 2)


def test_pages_come_back_byte_exact_and_only_under_their_version(tier):
    items = [Demotion(10 + i, i, blob(i), persistent=i % 2 == 0) for i in range(20)]
    locs = tier.store(items)
    assert None not in locs and len(set(locs)) == 1  # one batch, one hash tag, one primary
    for item, loc in zip(items, locs, strict=True):
        assert tier.load(loc, item.tag) == item.payload
        assert tier.load(loc, item.tag + 100) is None
    assert tier.stats()["stored"] == 20


def test_persistent_pages_are_on_a_replica_when_stored_and_never_expire(tier, cluster):
    items = [Demotion(1000 + i, i, blob(1000 + i), persistent=i < 5) for i in range(10)]
    [loc, *_] = tier.store(items)
    assert loc is not None
    for item in items:
        key = tier.key(loc, item.tag)
        primary = tier._cluster.get_node_from_key(key)  # type: ignore[union-attr]
        ttl = redis.Redis(host=primary.host, port=primary.port).ttl(key)
        if item.persistent:
            assert ttl == -1  # no expiry: never evicted by volatile-lru
            info = redis.Redis(host=primary.host, port=primary.port).info("replication")
            r = redis.Redis(host=info["slave0"]["ip"], port=info["slave0"]["port"])
            r.execute_command("READONLY")
            assert r.get(key) == item.payload  # WAIT confirmed it there
        else:
            assert ttl > 0  # volatile: the cluster may drop it under memory pressure


def test_free_deletes_the_keys(tier):
    items = [Demotion(2000 + i, i, blob(i), True) for i in range(5)]
    locs = tier.store(items)
    tier.free([(loc, item.tag) for loc, item in zip(locs, items, strict=True)])
    assert all(tier.load(loc, item.tag) is None for loc, item in zip(locs, items, strict=True))


def _calls(cluster, command: str) -> int:
    """How many times the cluster's primaries ran ``command`` so far."""
    total = 0
    for port in cluster.ports:
        r = redis.Redis(host="127.0.0.1", port=port)
        if r.info("replication")["role"] == "master":
            total += r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)
    return total


def test_free_unlinks_each_batchs_keys_in_one_command(tier, cluster):
    # Three batches (three hash tags): freeing their pages costs three commands, not one per
    # page, so a background thread freeing promoted pages takes little from the gets.
    batches = [
        [Demotion(3000 + 10 * b + i, i, blob(b * 10 + i), True) for i in range(5)] for b in range(3)
    ]
    locs = [tier.store(items) for items in batches]
    pages = tier.stats()["pages"]
    unlinks, dels = _calls(cluster, "unlink"), _calls(cluster, "del")
    freed = [
        (loc, item.tag)
        for items, where in zip(batches, locs, strict=True)
        for item, loc in zip(items, where, strict=True)
    ]
    random.Random(1).shuffle(freed)  # the host frees pages in any order
    tier.free(freed)
    assert _calls(cluster, "unlink") - unlinks == 3
    assert _calls(cluster, "del") == dels
    assert tier.stats()["pages"] == pages - 15
    assert all(tier.load(loc, tag) is None for loc, tag in freed)


def test_a_host_demotes_to_the_cluster_and_every_rule_reaches_the_pages(cluster):
    host = tmem.Host(1 << 20, tiers=[cluster.spec], demote_in_background=False)
    try:
        client = host.connect("vm1")
        pers, eph = client.new_pool(persistent=True), client.new_pool()
        for i in range(50):
            client.put_page(pers, i % 5, i, page(i))
            client.put_page(eph, 1, i, page(100 + i))
        assert host.demote(all_pages=True) == 100
        assert host.stats()["tiers"][0]["host_pages"] == 100
        client.put_page(pers, 0, 0, page(999))  # put-put-get over a demoted page
        client.flush_page(pers, 1, 1)
        client.flush_object(pers, 2)
        assert client.get_page(pers, 0, 0) == page(999)
        assert client.get_page(pers, 1, 1) is None
        assert all(client.get_page(pers, 2, i) is None for i in range(2, 50, 5))
        kept = [i for i in range(50) if i % 5 in (3, 4)]
        assert all(client.get_page(pers, i % 5, i) == page(i) for i in kept)
        assert client.get_page(eph, 1, 7) == page(107)
        assert client.get_page(eph, 1, 7) is None  # destructive private get, then get-get
        stats = host.stats()
        assert stats["tiering"]["promotions"] > 0
        assert stats["tiers"][0]["fetch_p99_us"] is not None
        assert stats["clients"]["vm1"]["tier_pages"] == stats["tiering"]["tier_pages"][0]
        client.close()
        host.demote()  # frees what the client's departure left in the cluster
        assert host.stats()["tiering"]["tier_pages"] == [0]
    finally:
        host.close()


def test_a_cluster_out_of_memory_refuses_persistent_pages_and_they_stay_in_ram(cluster):
    nodes = [redis.Redis(port=p) for p in cluster.ports]
    host = tmem.Host(1 << 20, tiers=[cluster.spec + "?retry-interval=0.1"],
                     demote_in_background=False)  # fmt: skip
    try:
        for r in nodes:
            r.config_set("maxmemory", r.info("memory")["used_memory"] + (256 << 10))
        client = host.connect("vm1")
        pool = client.new_pool(persistent=True)
        accepted = [i for i in range(400) if client.put_page(pool, 1, i, page(i))]
        for _ in range(10):  # refused batches are tried again after the retry interval
            host.demote(all_pages=True)
            time.sleep(0.15)
        stats = host.stats()
        assert stats["tiers"][0]["write_failures"] > 0  # OOM replies
        assert 0 < stats["tiering"]["tier_pages"][0] < len(accepted)
        assert all(client.get_page(pool, 1, i) == page(i) for i in accepted)
    finally:
        for r in nodes:
            r.config_set("maxmemory", 0)
        host.close()


def test_bad_tier_spellings_are_refused():
    for spec in ("redis://", "redis://host", "redis://h:99999", "redis://h:1?nope=1",
                 "redis://h:1?fetch-timeout=x", "ssd:/tmp", "ssd::1M", "nfs://x"):  # fmt: skip
        with pytest.raises(tmem.InvalidArgument):
            tmem.Host(1 << 20, tiers=[spec])


def test_a_get_asks_the_primary_of_its_batch_directly_once_it_is_known(tier, monkeypatch):
    items = [Demotion(3000 + i, i, blob(i), True) for i in range(5)]
    locs = tier.store(items)
    cluster = tier._cluster
    real = cluster.get_node_from_key
    lookups = []

    def lookup(key, *args, **kwargs):
        lookups.append(key)
        return real(key, *args, **kwargs)

    monkeypatch.setattr(cluster, "get_node_from_key", lookup)
    for loc, item in zip(locs, items, strict=True):
        assert tier.load(loc, item.tag) == item.payload
    assert len(lookups) == 1  # one batch: its primary is looked up once


def test_gets_use_a_connection_of_their_primary_without_its_pool(tier, monkeypatch):
    # A get takes one of the tier's idle connections to the batch's primary, not the
    # pool's (whose checkout costs more CPU than the round trip), and gives it back.
    items = [Demotion(3500 + i, i, blob(3500 + i), True) for i in range(8)]
    locs = tier.store(items)
    assert tier.load(locs[0], items[0].tag) == items[0].payload
    node = tier._cluster.get_node_from_key(tier.key(locs[0], items[0].tag))
    pool = tier._cluster.get_redis_connection(node).connection_pool

    def checkout(*args, **kwargs):
        raise AssertionError("a get went through the connection pool")

    monkeypatch.setattr(pool, "get_connection", checkout)
    for loc, item in zip(locs, items, strict=True):
        assert tier.load(loc, item.tag) == item.payload
    [primary] = tier._primaries.values()
    assert len(primary.idle) == 1  # one get at a time: one connection, reused
    assert tier.stats()["reconnects"] == 1 and tier.stats()["load_failures"] == 0


def test_a_forked_child_gets_on_connections_of_its_own(tier):
    # The parent's idle connection is shared with a child made by fork(): were the
    # child to send on it, the parent's next reply could be read by the child.
    items = [Demotion(3550 + i, i, blob(3550 + i), True) for i in range(4)]
    locs = tier.store(items)
    assert tier.load(locs[0], items[0].tag) == items[0].payload
    [primary] = tier._primaries.values()
    [inherited] = primary.idle
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            pages = [tier.load(loc, item.tag) for loc, item in zip(locs, items, strict=True)]
            fresh = primary.idle and all(conn is not inherited for conn in primary.idle)
            ok = pages == [item.payload for item in items] and fresh
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(child, 0)
    assert answer == b"1"
    assert primary.idle == [inherited]  # the parent's connection is untouched, and works
    assert [tier.load(loc, item.tag) for loc, item in zip(locs, items, strict=True)] == [
        item.payload for item in items
    ]


def test_an_idle_connection_the_node_closed_is_replaced_without_a_reconnect(tier):
    # A node may close a connection while it is idle (its timeout, CLIENT KILL): the
    # next get on it makes a new one and still answers, without re-reading the cluster.
    item = Demotion(3600, 1, blob(3600), True)
    [loc] = tier.store([item])
    assert tier.load(loc, item.tag) == item.payload
    node = tier._cluster.get_node_from_key(tier.key(loc, item.tag))
    killer = redis.Redis(host=node.host, port=node.port)
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
    killer.close()
    assert tier.load(loc, item.tag) == item.payload
    stats = tier.stats()
    assert stats["reconnects"] == 1 and stats["load_retries"] == 0
    assert stats["load_failures"] == 0 and tier.failure is None


def test_a_remembered_primary_that_no_longer_owns_the_batch_is_forgotten(tier, cluster):
    # As after a failover or a resharding: the node answers MOVED; the tier re-reads the
    # map of slots and the page still comes back.
    item = Demotion(4000, 1, blob(4000), True)
    [loc] = tier.store([item])
    assert tier.load(loc, item.tag) == item.payload
    owner = tier._cluster.get_node_from_key(tier.key(loc, item.tag))
    other = next(p for p in cluster.primaries() if p != owner.port)
    tier._owners[loc] = _Primary(redis.Redis(host="127.0.0.1", port=other))
    assert tier.load(loc, item.tag) == item.payload
    assert tier._owners[loc].port == owner.port
    assert tier.stats()["load_failures"] == 0

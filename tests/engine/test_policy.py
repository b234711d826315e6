"""The host's policy: floors by weight, memory above them by utility (ghost hits), idle
clients without a share, poorly compressible pages first to go, persistent targets."""

from __future__ import annotations

import os

import pytest

import tmem
from tests.charges import COST, PAGE, room_for
from tmem.engine import ledger

#: Two clients' 40 pages, each client's in one object of one pool.
CAPACITY = room_for(40, objects=2, pools=2)


def fill(client, pool, first: int, count: int, data: bytes = b"x" * PAGE) -> None:
    for i in range(first, first + count):
        assert client.put_page(pool, 1, i, data)


def test_memory_moves_to_the_client_whose_evicted_pages_are_missed_and_floors_hold():
    host = tmem.Host(CAPACITY, compress=None, policy="utility", reserve=0.5)
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(), b.new_pool()
    fill(a, pa, 0, 20)
    fill(b, pb, 0, 20)
    for i in range(4):  # full: b (more bytes with its put) loses its pages 0 to 3...
        assert b.put_page(pb, 1, 20 + i, b"y" * PAGE)
    for i in range(4):  # ...and misses them: ghost hits
        assert b.get_page(pb, 1, i) is None
    assert b.stats()["utility"] == 4 and a.stats()["utility"] == 0
    assert a.stats()["pages"] == 20
    fill(b, pb, 24, 60)  # a's memory goes to b, down to a's floor and no further
    floor = a.stats()["ephemeral_floor"]
    assert floor == int(0.5 * CAPACITY / 2)
    assert a.stats()["ephemeral_bytes"] == floor // COST * COST
    assert b.stats()["pages"] == 40 - floor // COST


def test_above_the_floors_memory_is_shared_in_proportion_to_one_plus_ghost_hits():
    host = tmem.Host(CAPACITY, compress=None, policy="utility", reserve=0.0)
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(), b.new_pool()
    fill(a, pa, 0, 20)
    fill(b, pb, 0, 20)
    assert b.put_page(pb, 1, 20, b"y" * PAGE)  # b loses its page 0
    assert b.get_page(pb, 1, 0) is None  # one ghost hit: b's memory counts half
    fill(b, pb, 21, 100)
    # a holds 1 share, b 2: a keeps a third of the host, not nothing
    assert (a.stats()["pages"], b.stats()["pages"]) == (13, 27)


def test_the_older_policy_splits_evenly_whatever_is_missed():
    host = tmem.Host(CAPACITY, compress=None, policy="share")
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(), b.new_pool()
    fill(a, pa, 0, 20)
    fill(b, pb, 0, 20)
    assert b.put_page(pb, 1, 20, b"y" * PAGE)
    assert b.get_page(pb, 1, 0) is None
    fill(b, pb, 21, 40)
    assert a.stats()["pages"] == 20 and host.stats()["policy"] == "share"


def test_idle_clients_have_no_floor_and_no_persistent_share(monkeypatch):
    monkeypatch.setattr(ledger, "IDLE_OPERATIONS", 50)  # a while, shortened
    host = tmem.Host(CAPACITY, compress=None)
    a, b = host.connect("a"), host.connect("b")
    c = host.connect("c")  # connected, never calls
    pa, pb = a.new_pool(persistent=True), b.new_pool()
    fill(a, pa, 0, 10)
    fill(b, pb, 0, 100)  # past 80 operations (twice the pages): c is idle
    a.get_page(pa, 1, 0)
    assert not c.stats()["active"] and a.stats()["active"]
    assert b.stats()["ephemeral_floor"] == int(ledger.DEFAULT_RESERVE * CAPACITY / 2)
    assert c.stats()["ephemeral_floor"] == 0
    assert a.stats()["persistent_target"] == CAPACITY // 2
    c.get_page(c.new_pool(), 1, 1)  # c wakes up: three share the host
    assert a.stats()["persistent_target"] == CAPACITY // 3


def test_a_poorly_compressible_page_is_kept_while_there_is_room_and_goes_first():
    host = tmem.Host(64 << 10, compress="lz4")
    client = host.connect("vm1")
    pool = client.new_pool()
    poor = os.urandom(PAGE)
    assert client.put_page(pool, 1, 0, poor)  # room: kept raw
    assert host.stats()["store"]["huge_pages"] == 1
    n = 0
    while host.stats()["evictions"] == 0:  # good pages until the host is full
        n += 1
        assert client.put_page(pool, 2, n, os.urandom(64) * 64)
    assert client.get_page(pool, 1, 0) is None  # the poor page, the oldest, went first
    assert client.get_page(pool, 2, 1) is not None  # the oldest good page stayed
    assert host.stats()["store"]["reject_compress_poor"] == 0


def test_a_raw_page_just_put_outlives_the_oldest_good_pages_but_not_as_long_as_lru():
    host = tmem.Host(64 << 10, compress="lz4")
    client = host.connect("vm1")
    pool = client.new_pool()
    n = 0
    while host.stats()["evictions"] == 0:  # good pages (about 400 bytes each) fill the host
        n += 1
        assert client.put_page(pool, 2, n, os.urandom(64) * 64)
    # A full host still admits a poor page (refusing it read more on the workload
    # benchmark); good pages make room for it.
    assert client.put_page(pool, 1, 0, os.urandom(PAGE))
    put_at, evicted = n, host.stats()["evictions"]
    while host.stats()["store"]["huge_pages"]:  # good pages until the raw page goes
        n += 1
        assert client.put_page(pool, 2, n, os.urandom(64) * 64)
    # Good pages went before it (sending raw pages first read more on the workload
    # benchmark), but it went once its bytes times its age passed the oldest good
    # page's: older good pages are still held, which LRU would have taken first.
    assert host.stats()["evictions"] > evicted + 1
    assert any(client.get_page(pool, 2, i) is not None for i in range(1, put_at + 1))
    assert all(client.get_page(pool, 2, i) is not None for i in range(put_at + 1, n + 1))


def test_a_compressed_host_keeps_what_a_plain_one_keeps_while_it_has_room():
    pages = [os.urandom(PAGE) for _ in range(8)]
    for compress in (None, "lz4", "zstd"):
        host = tmem.Host(1 << 20, compress=compress)
        client = host.connect("vm1")
        pool = client.new_pool()
        assert all(client.put_page(pool, 1, i, p) for i, p in enumerate(pages))


def test_a_lone_client_may_fill_the_host_and_is_over_its_target_once_another_is_active():
    capacity = room_for(20, objects=2, pools=2)  # a's 20 pages and room for b's pool
    host = tmem.Host(capacity, compress=None)
    a = host.connect("a")
    pa = a.new_pool(persistent=True)
    fill(a, pa, 0, 20)  # alone: its target is the whole host
    assert a.stats()["persistent_target"] == capacity and a.stats()["persistent_over"] == 0
    b = host.connect("b")
    pb = b.new_pool(persistent=True)
    assert not b.put_page(pb, 1, 0, b"y" * PAGE)  # nothing a may evict: refused...
    assert a.stats()["persistent_target"] == capacity // 2
    over = a.stats()["bytes"] - capacity // 2
    assert over > 9 * COST and a.stats()["persistent_over"] == over  # ...and a is over
    for i in range(10):  # what frontswap's self-shrinking does, toward the target
        a.flush_page(pa, 1, i)
    assert a.stats()["persistent_over"] == 0
    assert b.put_page(pb, 1, 0, b"y" * PAGE)  # the newcomer gets in


@pytest.mark.parametrize("policy", ["utility", "share"])
def test_unknown_policies_and_reserves_are_invalid(policy):
    tmem.Host(1 << 20, policy=policy)
    with pytest.raises(tmem.InvalidArgument):
        tmem.Host(1 << 20, policy="lru-ish")
    with pytest.raises(tmem.InvalidArgument):
        tmem.Host(1 << 20, policy=policy, reserve=1.5)


def test_poorly_compressible_pages_go_first_within_the_client_the_policy_chooses():
    host = tmem.Host(64 << 10, compress="lz4", policy="share")
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(), b.new_pool()
    assert a.put_page(pa, 1, 0, os.urandom(64) * 64)  # a's oldest page, a good one
    assert a.put_page(pa, 1, 1, os.urandom(PAGE))  # kept raw while there is room
    n = 0
    while host.stats()["evictions"] == 0:  # b fills the host with good pages
        n += 1
        assert b.put_page(pb, 1, n, os.urandom(64) * 64)
    # b holds the most, so b gives up its oldest page; a's poor page stays.
    assert b.stats()["evictions"] == 1 and a.stats()["evictions"] == 0
    i = 1
    while a.stats()["evictions"] == 0:  # a grows until the policy chooses a...
        i += 1
        assert a.put_page(pa, 1, i, os.urandom(64) * 64)
    assert a.stats()["evictions"] == 1
    assert a.get_page(pa, 1, 1) is None  # ...and its poor page goes before its older one
    assert a.get_page(pa, 1, 0) is not None


def test_a_client_within_its_target_refused_keeps_the_others_told_they_are_over():
    capacity = room_for(20, objects=2, pools=2)
    host = tmem.Host(capacity, compress=None)
    a = host.connect("a")
    pa = a.new_pool(persistent=True)
    fill(a, pa, 0, 20)  # alone: the whole host
    b = host.connect("b")
    pb = b.new_pool(persistent=True)
    assert not b.put_page(pb, 1, 0, b"y" * PAGE)  # within its target, refused: pressure
    a.flush_page(pa, 1, 0)  # the host has room again, below where the share rule starts...
    over = a.stats()["bytes"] - capacity // 2
    assert over > 0 and a.stats()["persistent_over"] == over  # ...and a is still told
    host_pages = capacity // COST
    for i in range(max(1024, host_pages) + 1):  # a while later with no refusal: quiet
        b.get_page(pb, 1, 1000 + i)
    assert a.stats()["persistent_over"] == 0


def test_a_client_without_pools_holds_no_share():
    host = tmem.Host(CAPACITY, compress=None)
    a = host.connect("a")
    fill(a, a.new_pool(persistent=True), 0, 10)
    b = host.connect("b")  # connected, no pool: it can hold nothing
    assert a.stats()["persistent_target"] == CAPACITY
    pb = b.new_pool()
    b.get_page(pb, 1, 0)
    assert a.stats()["persistent_target"] == CAPACITY // 2
    b.destroy_pool(pb)  # a guest whose job ended
    assert a.stats()["persistent_target"] == CAPACITY

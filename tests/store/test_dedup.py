"""Deduplication: identical pages stored once, reference-counted, never changed in place."""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

import tmem
import tmem.store.compressed as compressed
from tests.store.kinds import page_of
from tmem.store import CompressedStore
from tmem.store.dedup import INDEX_ENTRY_BYTES, DedupIndex
from tmem.store.handles import HandleTable


def test_identical_pages_share_one_copy_until_the_last_reference_goes():
    store = CompressedStore("lz4", dedup="client")
    data = page_of("text")
    refs = [store.put(data, True, 0) for _ in range(3)]
    assert len(set(refs)) == 1
    stats = store.stats()
    assert (stats["stored_pages"], stats["logical_pages"], stats["dedup_hits"]) == (1, 3, 2)
    one = store.used_bytes  # one copy, and the index table at its real size
    assert one == store.charge(refs[0]) - INDEX_ENTRY_BYTES + store.index.table_bytes
    store.free(refs[0])
    store.free(refs[1])
    assert store.get(refs[2]) == data and store.used_bytes == one
    store.free(refs[2])
    assert store.used_bytes == 0 and store.stats()["stored_pages"] == 0
    assert store.put(data, True, 0) >= 0  # the index forgot it: stored afresh
    assert store.stats()["dedup_hits"] == 2


@pytest.mark.parametrize("scope, copies", [("client", 2), ("host", 1), (None, 4)])
def test_scope_decides_who_shares(scope, copies):
    store = CompressedStore("zstd", dedup=scope)
    data = page_of("binary")
    for cid in (1, 1, 2, 2):
        store.put(data, False, cid)
    assert store.stats()["stored_pages"] == copies


def test_host_dedup_counts_shared_content_once_but_charges_every_holder():
    host = tmem.Host(64 << 20, dedup="host")
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(persistent=True), b.new_pool(persistent=True)
    for i in range(10):
        assert a.put_page(pa, 1, i, page_of("text", seed=i))
        assert b.put_page(pb, 1, i, page_of("text", seed=i))
    stats = host.stats()
    assert stats["dedup_ratio"] == 2.0
    assert a.stats()["bytes"] == b.stats()["bytes"]
    assert stats["charged_bytes"] == 2 * a.stats()["bytes"]
    assert stats["bytes"] < 0.6 * stats["charged_bytes"]


def test_a_poorly_compressible_duplicate_is_shared_and_still_marked_poor():
    store = CompressedStore("lz4")
    data = page_of("random")
    ref = store.put(data, True, 0)
    assert store.put(data, False, 0) == ref and store.poor(ref)
    assert store.put(data, True, 0) == ref
    assert store.stats()["dedup_hits"] == 2


def test_pages_whose_hashes_collide_are_compared_and_kept_apart(monkeypatch):
    monkeypatch.setattr(compressed, "_hash", lambda data, seed: 12345)
    store = CompressedStore("lz4", dedup="host")
    pages = [page_of("text", seed=s) for s in range(4)]
    refs = [store.put(p, False, 0) for p in pages]
    assert len(set(refs)) == 4 and store.stats()["hash_collisions"] == 3
    assert [store.get(r) for r in refs] == pages
    for r in refs:
        store.free(r)
    assert store.used_bytes == 0 and not store.index


OPS = ("overwrite_a", "flush_b", "flush_object_c", "get_d", "destroy_pool_e")


@pytest.mark.parametrize("order", list(itertools.permutations(OPS)))
def test_no_operation_on_one_handle_changes_what_another_reads(order):
    host = tmem.Host(64 << 20, dedup="host")
    x, y = host.connect("x"), host.connect("y")
    same, other = page_of("text"), page_of("half")
    shared = uuid.uuid4()
    host.authorize_shared("y", shared)
    pools = {
        "a": (x, x.new_pool(persistent=True)),
        "b": (x, x.new_pool(persistent=True)),
        "c": (y, y.new_pool(persistent=True)),
        "d": (y, y.new_pool()),  # private ephemeral: a get takes the page
        "e": (y, y.new_pool(shared=True, uuid=shared)),
    }
    expect = {name: same for name in pools}
    for client, pool in pools.values():
        assert client.put_page(pool, 7, 0, same)
    assert host.stats()["store"]["stored_pages"] == 1
    for op in order:
        verb, name = op.rsplit("_", 1)
        client, pool = pools[name]
        if verb == "overwrite":
            assert client.put_page(pool, 7, 0, other)
            expect[name] = other
        elif verb == "get":
            assert client.get_page(pool, 7, 0) == same
            del expect[name]
        elif verb == "flush":
            client.flush_page(pool, 7, 0)
            del expect[name]
        elif verb == "flush_object":
            client.flush_object(pool, 7)
            del expect[name]
        else:
            client.destroy_pool(pool)
            del expect[name]
        for other_name, data in expect.items():
            c, p = pools[other_name]
            if other_name != "d":  # a get from "d" would take its page
                assert c.get_page(p, 7, 0) == data
        store = host.stats()["store"]
        assert store["stored_pages"] == len(set(expect.values()))
        assert store["logical_pages"] == len(expect)
    x.close()
    y.close()
    assert host.store.used_bytes == 0 and host.stats()["bytes"] == 0


def test_the_index_finds_exactly_what_was_added_through_growth_and_shrinkage():
    table = HandleTable(dedup=True)
    index = DedupIndex(table)
    rng = random.Random(4)
    model: dict[int, int] = {}
    for step in range(6000):
        if model and (rng.random() < 0.45 or step > 4000):
            key = rng.choice(sorted(model))
            index.remove(model.pop(key))
        else:
            key = rng.getrandbits(128) & ~0xFF  # low bits alike: long probe runs
            h = table.alloc(0)
            table.set_key(h, key, 0)
            index.add(h)
            model[key] = h
        if step % 97 == 0:
            assert all(index.find(k) == h for k, h in model.items())
            assert index.find(rng.getrandbits(128)) == -1
    assert len(index) == len(model) and index.table_bytes <= max(512, 8 * 8 * len(model))

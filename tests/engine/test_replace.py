"""Putting a page over an existing one, far from every limit (the in-place path)."""

from __future__ import annotations

import os

import tmem
from tests.charges import room_for


def test_a_refused_overwrite_flushes_the_old_page_and_counts_one_refusal():
    host = tmem.Host(64 << 10, compress="lz4")
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    n = 0
    while client.put_page(pool, 1, n + 1, os.urandom(64) * 64):  # fill with small pages
        n += 1
    refused = client.stats()["reject_capacity"]
    # A page that compresses poorly needs more room than the old one frees: refused.
    assert client.put_page(pool, 1, n, os.urandom(4096)) is False
    assert client.get_page(pool, 1, n) is None
    assert client.stats()["reject_capacity"] == refused + 1


def test_overwrites_keep_the_charges_exact():
    host = tmem.Host(64 << 20, compress="lz4")
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    sizes = [64, 4000, 700, 2048]
    for n in sizes:
        data = os.urandom(n) + bytes(4096 - n)
        assert client.put_page(pool, 1, 0, data)
        assert client.get_page(pool, 1, 0) == data
    fresh = tmem.Host(64 << 20, compress="lz4").connect("vm1")
    fresh_pool = fresh.new_pool(persistent=True)
    assert fresh.put_page(fresh_pool, 1, 0, data)
    assert client.stats()["bytes"] == fresh.stats()["bytes"]
    assert client.stats()["pages"] == 1


def test_an_overwritten_ephemeral_page_becomes_the_most_recently_used():
    host = tmem.Host(room_for(3), compress=None)
    client = host.connect("vm1")
    pool = client.new_pool(shared=False)
    for i in range(3):
        assert client.put_page(pool, 1, i, bytes([i]) * 4096)
    host.set_capacity(room_for(100))  # far from the limits: the in-place path
    assert client.put_page(pool, 1, 0, b"z" * 4096)
    host.set_capacity(room_for(3))
    assert client.put_page(pool, 1, 3, b"y" * 4096)  # evicts the oldest: index 1
    assert client.get_page(pool, 1, 1) is None
    assert client.get_page(pool, 1, 0) == b"z" * 4096

"""Batched calls, on the embedded client and over the wire alike (``make_host``)."""

from __future__ import annotations

import pytest

import tmem
from tests.charges import room_for

PAGE = 4096


def page(n: int) -> bytes:
    return n.to_bytes(8, "little") * (PAGE // 8)


def test_a_batch_of_puts_and_gets_matches_single_calls(make_host):
    client = make_host(64 << 20, compress=None).connect("vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_pages(pool, [(1, i, page(i)) for i in range(100)]) == [True] * 100
    assert client.get_pages(pool, [(1, i) for i in range(100, -1, -1)]) == [None] + [
        page(i) for i in range(99, -1, -1)
    ]
    assert client.get_page(pool, 1, 42) == page(42)
    assert client.stats()["succ_puts"] == 100 and client.stats()["gets"] == 102


def test_batched_gets_from_a_private_ephemeral_pool_take_the_pages(make_host):
    client = make_host(64 << 20).connect("vm1")
    pool = client.new_pool()
    assert all(client.put_pages(pool, [(2, i, page(i)) for i in range(10)]))
    assert client.get_pages(pool, [(2, i) for i in range(10)]) == [page(i) for i in range(10)]
    assert client.get_pages(pool, [(2, i) for i in range(10)]) == [None] * 10


def test_a_bad_item_is_an_error_in_its_place_and_the_others_take_effect(make_host):
    client = make_host(64 << 20).connect("vm1")
    pool = client.new_pool(persistent=True)
    items = [(1, 0, page(0)), (1, -5, page(1)), (1, 2, b"short"), "junk", (1, 3, page(3))]
    results = client.put_pages(pool, items, errors="return")
    assert results[0] is True and results[4] is True
    assert all(isinstance(r, tmem.InvalidArgument) for r in results[1:4])
    with pytest.raises(tmem.InvalidArgument):
        client.put_pages(pool, [(1, 7, b"short"), (1, 8, page(8))])
    assert client.get_pages(pool, [(1, 0), (1, 3), (1, 8)]) == [page(0), page(3), page(8)]
    got = client.get_pages(pool, [(1, 0), (2**192, 0)], errors="return")
    assert got[0] == page(0) and isinstance(got[1], tmem.InvalidArgument)


def test_a_batch_on_an_unknown_pool_raises_no_such_pool(make_host):
    client = make_host(64 << 20).connect("vm1")
    with pytest.raises(tmem.NoSuchPool):
        client.put_pages(9, [(1, 1, page(1))])
    with pytest.raises(tmem.NoSuchPool):
        client.get_pages(9, [(1, 1)])


def test_a_batch_refused_for_room_answers_false_per_page(make_host):
    host = make_host(room_for(3), compress=None)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    results = client.put_pages(pool, [(1, i, page(i)) for i in range(5)])
    assert results == [True, True, True, False, False]
    assert client.stats()["reject_capacity"] == 2


def test_an_unknown_errors_mode_is_refused(make_host):
    client = make_host(64 << 20).connect("vm1")
    pool = client.new_pool()
    with pytest.raises(tmem.InvalidArgument):
        client.put_pages(pool, [], errors="ignore")

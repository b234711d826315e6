"""The embedded host's packed batches: the daemon hands it a frame's items as they lie.

``HostClient.put_packed`` and ``start_get_packed`` read each item's handle from the
frame and pass each page as a view, with no tuple per item made first; they must
answer exactly as ``put_pages`` and ``get_pages`` do (errors in place, pages
stored and got, changes recorded for an export under way).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tmem
from tmem.wire import Decoder, Op
from tmem.wire import messages as msg

PAGE = 4096
HEAD = msg.BATCH.size


def body_of(frame: bytes) -> memoryview:
    decoder = Decoder()
    decoder.feed(frame)
    _op, _status, _tag, body = decoder.next_frame()
    return body


def put_body(pool: int, items: list[tuple[int, int, bytes]], size: int = PAGE) -> memoryview:
    return body_of(b"".join(msg.encode_put_pages(pool, size, items)))


def get_body(pool: int, handles: list[tuple[int, int]]) -> memoryview:
    return body_of(msg.encode_get_pages(pool, handles))


def page(n: int) -> bytes:
    return random.Random(n).randbytes(PAGE)


def test_the_item_layout_the_host_reads_is_the_wires():
    assert msg.ITEM.size == msg.ITEM_SIZE
    assert msg.unpack_item(msg.ITEM.pack((5 + (7 << 64)).to_bytes(24, "little"), 9), 0) == (
        5, 7, 0, 9,
    )  # fmt: skip


handles = st.tuples(st.sampled_from([0, 1, 2**64 - 1, 2**64 + 3, 2**191 + 11]), st.integers(0, 9))


@settings(max_examples=30, deadline=None)
@given(st.lists(handles, max_size=12), st.lists(handles, max_size=12))
def test_packed_batches_answer_as_the_item_batches_do(puts, gets):
    packed, listed = (tmem.Host(64 << 20, compress=None).connect("vm") for _ in range(2))
    pools = [client.new_pool(persistent=True) for client in (packed, listed)]
    assert pools[0] == pools[1]
    pool = pools[0]
    items = [(oid, index, page(oid % 1000 + index)) for oid, index in puts]
    assert packed.put_packed(pool, put_body(pool, items), HEAD, len(items), PAGE) == (
        listed.put_pages(pool, items, errors="return")
    )
    got, fetches = packed.start_get_packed(pool, get_body(pool, gets), HEAD, len(gets))
    assert not fetches
    assert got == listed.get_pages(pool, gets, errors="return")
    assert got == [
        page(oid % 1000 + index) if (oid, index) in puts else None for oid, index in gets
    ]


def test_a_packed_batch_in_no_pool_fails_every_item_once():
    client = tmem.Host(16 << 20, compress=None).connect("vm")
    items = [(1, i, page(i)) for i in range(3)]
    results = client.put_packed(7, put_body(7, items), HEAD, 3, PAGE)
    assert len(results) == 3 and all(isinstance(r, tmem.NoSuchPool) for r in results)
    got, fetches = client.start_get_packed(7, get_body(7, [(1, 0), (1, 1)]), HEAD, 2)
    assert len(got) == 2 and all(isinstance(r, tmem.NoSuchPool) for r in got) and not fetches


def test_a_page_the_store_refuses_is_an_error_in_its_place():
    client = tmem.Host(16 << 20, compress=None).connect("vm")
    pool = client.new_pool(persistent=True)
    body = put_body(pool, [(1, 0, bytes(512)), (1, 1, bytes(512))], size=512)
    results = client.put_packed(pool, body, HEAD, 2, 512)  # the pool's pages are 4096 bytes
    assert all(isinstance(r, tmem.InvalidArgument) for r in results)


@pytest.mark.parametrize("first, count", [(HEAD, 3), (HEAD + 1, 2), (-1, 1), (HEAD, -1)])
def test_items_beyond_the_buffer_are_refused_before_any_is_put(first, count):
    client = tmem.Host(16 << 20, compress=None).connect("vm")
    pool = client.new_pool(persistent=True)
    body = put_body(pool, [(1, 0, page(0)), (1, 1, page(1))])
    with pytest.raises(tmem.InvalidArgument):
        client.put_packed(pool, body, first, count, PAGE)
    with pytest.raises(tmem.InvalidArgument):
        client.start_get_packed(pool, get_body(pool, [(1, 0)]), first, count)
    assert client.get_pages(pool, [(1, 0), (1, 1)]) == [None, None]


def test_pages_put_packed_are_copies_not_views_of_the_frame():
    client = tmem.Host(16 << 20, compress=None).connect("vm")
    pool = client.new_pool(persistent=True)
    frame = bytearray(b"".join(msg.encode_put_pages(pool, PAGE, [(1, 0, page(0))])))
    body = body_of(bytes(frame))
    assert client.put_packed(pool, body, HEAD, 1, PAGE) == [True]
    body.release()
    assert client.get_page(pool, 1, 0) == page(0)


def test_an_export_under_way_sees_the_pages_a_packed_batch_changed():
    host = tmem.Host(16 << 20, compress=None)
    client = host.connect("vm")
    pool = client.new_pool(persistent=True)
    host.export_begin("vm")
    while host.export_pages("vm"):
        pass
    assert client.put_packed(pool, put_body(pool, [(3, 4, page(9))]), HEAD, 1, PAGE) == [True]
    host.export_round("vm")
    records = [r for chunk in iter(lambda: host.export_pages("vm"), []) for r in chunk]
    assert any(r[1:4] == (pool, 3, 4) for r in records), records
    host.export_end("vm")


def test_the_daemon_answers_batches_through_the_packed_path(start_daemon):
    daemon = start_daemon()
    with tmem.connect(daemon.address, name="vm") as client:
        pool = client.new_pool(persistent=True)
        items = [(2**70 + i, i, page(i)) for i in range(200)]  # small and sliced batches
        for chunk in (items[:5], items[5:]):
            assert client.put_pages(pool, chunk) == [True] * len(chunk)
        assert client.get_pages(pool, [(o, i) for o, i, _ in items]) == [d for _, _, d in items]
        assert client.get_pages(pool, [(1, 0), (2**70, 0)]) == [None, page(0)]
    assert Op.PUT_PAGES and Op.GET_PAGES

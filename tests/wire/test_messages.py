"""Message bodies: every message decodes to what was encoded; garbage gives only WireError."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.wire import Decoder, Op, WireError
from tmem.wire import messages as msg

oids = st.integers(0, 2**192 - 1)
indexes = st.integers(0, 2**32 - 1)
pools = st.integers(0, 2**32 - 1)


def body_of(frame: bytes, op: int) -> memoryview:
    decoder = Decoder()
    decoder.feed(frame)
    got_op, status, _tag, body = decoder.next_frame()
    assert (got_op, status) == (op, 0) and decoder.buffered == 0
    return body


@given(st.text(max_size=40), st.sampled_from([msg.ROLE_CLIENT, msg.ROLE_ADMIN]), st.text())
def test_hello_round_trips(name, role, token):
    frame = msg.encode_hello(name, role, token)
    assert msg.decode_hello(body_of(frame, Op.HELLO)) == (msg.VERSION, role, name, token)


def test_hello_reply_round_trips():
    body = memoryview(msg.encode_hello_reply("0:vm1", 12345))
    assert msg.decode_hello_reply(body) == (msg.VERSION, 12345, "0:vm1")


@pytest.mark.parametrize("pool_uuid", [None, uuid.uuid4()])
@pytest.mark.parametrize("persistent, shared", [(False, False), (True, False), (True, True)])
def test_new_pool_round_trips(persistent, shared, pool_uuid):
    frame = msg.encode_new_pool(persistent, shared, pool_uuid, 65536)
    got = msg.decode_new_pool(body_of(frame, Op.NEW_POOL))
    assert got == (persistent, shared, pool_uuid, 65536)


@given(pools, oids, indexes, st.binary(max_size=600))
def test_put_round_trips(pool, oid, index, data):
    got = msg.decode_put(body_of(msg.encode_put(pool, oid, index, data), Op.PUT))
    assert got[:3] == (pool, oid, index) and bytes(got[3]) == data


@given(pools, oids, indexes)
def test_handles_and_objects_round_trip(pool, oid, index):
    for op in (Op.GET, Op.FLUSH_PAGE):
        assert msg.decode_handle(body_of(msg.encode_handle_op(op, pool, oid, index), op)) == (
            pool,
            oid,
            index,
        )
    body = body_of(msg.encode_flush_object(pool, oid), Op.FLUSH_OBJECT)
    assert msg.decode_object(body) == (pool, oid)
    assert (
        msg.decode_pool(body_of(msg.encode_pool_op(Op.DESTROY_POOL, pool), Op.DESTROY_POOL)) == pool
    )


@given(st.lists(st.tuples(oids, indexes, st.binary(min_size=16, max_size=16)), max_size=20))
def test_put_pages_round_trips(items):
    frame = b"".join(msg.encode_put_pages(3, 16, items))
    pool, got = msg.decode_put_pages(body_of(frame, Op.PUT_PAGES))
    assert pool == 3 and [(o, i, bytes(d)) for o, i, d in got] == items


def test_put_pages_refuses_a_page_of_another_size():
    with pytest.raises(WireError):
        msg.encode_put_pages(0, 16, [(1, 1, b"x" * 16), (1, 2, b"x" * 15)])


@given(st.lists(st.tuples(oids, indexes), max_size=30))
def test_get_pages_round_trips(handles):
    pool, got = msg.decode_get_pages(body_of(msg.encode_get_pages(7, handles), Op.GET_PAGES))
    assert pool == 7 and got == handles


def test_batch_reply_round_trips():
    parts = msg.encode_batch_reply(bytes([1, 0, 0x83]), "bad page", [b"a" * 8])
    codes, message, data = msg.decode_batch_reply(memoryview(b"".join(parts)), 3)
    assert (codes, message, bytes(data)) == (bytes([1, 0, 0x83]), "bad page", b"a" * 8)


@given(st.sampled_from(list(Op)), st.integers(0, 2**16 - 1), st.binary(max_size=100))
def test_replies_carry_their_request_op_and_tag(op, tag, body):
    decoder = Decoder()
    decoder.feed(msg.encode_reply(op, tag, body))
    decoder.feed(b"".join(msg.encode_reply_parts(op, tag, [body[:3], body[3:]])))
    for _ in range(2):
        assert decoder.next_frame()[:3] == (op, 0, tag)


@given(st.integers(1, 255), st.text(max_size=5000))
def test_error_replies_carry_the_code_and_the_message_cut_short(code, message):
    decoder = Decoder()
    decoder.feed(msg.encode_error(Op.GET, 9, code, message))
    op, status, tag, body = decoder.next_frame()
    assert (op, status, tag) == (Op.GET, code, 9)
    assert len(body) <= msg.MAX_ERROR_MESSAGE
    assert message.encode()[: msg.MAX_ERROR_MESSAGE].decode(errors="replace") == msg.decode_error(
        body
    )


def test_put_answers_round_trip_and_anything_else_is_refused():
    for yes in (True, False):
        assert msg.decode_answer(memoryview(msg.encode_answer(yes))) is yes
    for bad in (b"", b"\x02", b"\x01\x00"):
        with pytest.raises(WireError):
            msg.decode_answer(memoryview(bad))


def test_json_bodies_round_trip_and_garbage_is_refused():
    frame = msg.encode_json_op(Op.SET_CLIENT, {"name": "vm1", "cap": None})
    assert msg.decode_json(body_of(frame, Op.SET_CLIENT)) == {"name": "vm1", "cap": None}
    with pytest.raises(WireError):
        msg.decode_json(memoryview(b"{not json"))


DECODERS = [
    msg.decode_hello,
    msg.decode_hello_reply,
    msg.decode_new_pool,
    msg.decode_pool,
    msg.decode_put,
    msg.decode_handle,
    msg.decode_object,
    msg.decode_put_pages,
    msg.decode_get_pages,
    msg.decode_json,
    lambda body: msg.decode_batch_reply(body, 3),
    msg.decode_answer,
    msg.decode_error,
]


@settings(max_examples=400)
@given(st.binary(max_size=120), st.sampled_from(range(len(DECODERS))))
def test_every_decoder_answers_garbage_with_wire_error_only(data, which):
    with contextlib.suppress(WireError):
        DECODERS[which](memoryview(data))


@settings(max_examples=200)
@given(st.data())
def test_every_decoder_refuses_valid_bodies_cut_short(data):
    frames = [
        (msg.encode_hello("vm1", 0, "t" * 20), msg.decode_hello),
        (msg.encode_new_pool(True, True, uuid.uuid4(), 4096), msg.decode_new_pool),
        (msg.encode_handle_op(Op.GET, 1, 2, 3), msg.decode_handle),
        (msg.encode_flush_object(1, 2), msg.decode_object),
        (b"".join(msg.encode_put_pages(1, 8, [(1, 2, b"x" * 8)] * 3)), msg.decode_put_pages),
        (msg.encode_get_pages(1, [(1, 2)] * 3), msg.decode_get_pages),
    ]
    frame, decode = data.draw(st.sampled_from(frames))
    body = frame[8:]
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(WireError):
        decode(memoryview(body[:cut]))


def test_the_sizes_written_as_constants_are_the_layouts_sizes():
    from tmem.wire import frames

    assert frames.HEADER.size == frames.HEADER_SIZE
    assert msg.HANDLE.size == msg._HANDLE_BYTES

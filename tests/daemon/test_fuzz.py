"""Garbage in: random and mutated frames at a running daemon, which must go on
serving a well-behaved client correctly and answer only with well-formed frames."""

from __future__ import annotations

import socket
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tmem
from tmem.daemon.config import Config
from tmem.wire import Decoder, Op, WireError
from tmem.wire import messages as msg

from .conftest import running

PAGE = 512


def valid_frames() -> list[bytes]:
    """A well-formed conversation touching every client op."""
    return [
        msg.encode_new_pool(True, False, None, PAGE),
        msg.encode_new_pool(False, True, uuid.UUID(int=5), PAGE),
        msg.encode_put(0, 3, 4, b"p" * PAGE),
        msg.encode_handle_op(Op.GET, 0, 3, 4),
        msg.encode_handle_op(Op.FLUSH_PAGE, 0, 3, 4),
        msg.encode_flush_object(0, 3),
        b"".join(msg.encode_put_pages(0, PAGE, [(1, i, b"q" * PAGE) for i in range(3)])),
        msg.encode_get_pages(0, [(1, i) for i in range(3)]),
        msg.encode_json_op(Op.STATS, None),
        msg.encode_json_op(Op.SET_CAPACITY, {"capacity": 0}),
        msg.encode_pool_op(Op.DESTROY_POOL, 0),
    ]


@st.composite
def mutated(draw) -> bytes:
    frames = draw(st.lists(st.sampled_from(valid_frames()), min_size=1, max_size=6))
    stream = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        pos = draw(st.integers(0, max(0, len(stream) - 1)))
        if kind == "flip" and stream:
            stream[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del stream[pos : pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            stream[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif len(stream) >= pos + 8:  # rewrite a length field
            stream[pos + 4 : pos + 8] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    return bytes(stream)


streams = st.one_of(st.binary(max_size=600), mutated())


@pytest.fixture(scope="module")
def fuzz_daemon():
    with tempfile.TemporaryDirectory() as workdir:
        settings_ = {"socket": str(Path(workdir) / "f.sock"), "capacity": 8 << 20}
        settings_.update(admin_uids=[], compress=None)  # no peer may administer
        with running(Config().with_values(settings_)) as server:
            good = tmem.connect(server.address, name="good")
            yield server, good, good.new_pool(persistent=True, page_size=PAGE)
            good.close()


def throw(server, data: bytes) -> None:
    """Send ``data``, then read every reply until the daemon closes; replies must parse."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    try:
        sock.connect(server.config.socket)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon already hung up on us
        decoder = Decoder()
        while n := sock.recv_into(decoder.recv_buffer()):
            decoder.received(n)
            while decoder.next_frame() is not None:
                pass
        assert decoder.buffered == 0, "the daemon sent a partial frame"
    except ConnectionResetError:
        pass
    except WireError as exc:
        raise AssertionError(f"the daemon sent a malformed frame: {exc}") from None
    finally:
        sock.close()


@settings(max_examples=150, deadline=None)
@given(data=streams, greet=st.booleans(), step=st.integers(0, 10_000))
def test_garbage_never_stops_the_daemon_serving_a_good_client(fuzz_daemon, data, greet, step):
    server, good, pool = fuzz_daemon
    throw(server, (msg.encode_hello(f"fuzz{step}") if greet else b"") + data)
    page = step.to_bytes(4, "little") * (PAGE // 4)
    assert good.put_page(pool, 1, step, page) is True
    assert good.get_page(pool, 1, step) == page
    good.flush_page(pool, 1, step)
    assert good.get_page(pool, 1, step) is None
    assert len(server.conns) == 1  # the fuzzing connection is gone, the good one stays

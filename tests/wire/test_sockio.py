"""The C socket calls (``tmem.wire._sockio``) and the frame layer's use of them.

The C module's functions are checked directly: what they send and receive,
that the server's calls never wait, that bounds and handles that do not fit
are refused before any system call, that a reply other than a plain answer
is left whole to the caller, that errors are the socket module's, and that
signals are run while the client's round trip waits.  The frame layer's reads and sends by
descriptor are checked against what the socket module's calls deliver, so
the pure-Python run (``TMEM_PURE=1``, where the module is not used) and the
compiled one prove the same.  Where the extension was not built its own
checks are skipped, unless CI expects the compiled build.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import threading
import time

import pytest

from tmem.wire import Decoder, OutBuffer, WireError, encode_frame
from tmem.wire import messages as msg


@pytest.fixture
def io():
    try:
        return importlib.import_module("tmem.wire._sockio")
    except ImportError:
        if os.environ.get("TMEM_EXPECT_COMPILED") == "1":
            raise
        pytest.skip("tmem.wire._sockio was not built")


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    with left, right:
        yield left, right


def test_recv_into_reads_into_the_buffer_from_start(io, pair):
    left, right = pair
    left.sendall(b"hello")
    buf = bytearray(b"." * 16)
    assert io.recv_into(right.fileno(), buf, 3) == 5
    assert buf == b"...hello" + b"." * 8


def test_recv_into_and_send_never_wait_even_on_a_blocking_socket(io, pair):
    left, right = pair
    assert left.getblocking() and right.getblocking()
    with pytest.raises(BlockingIOError):
        io.recv_into(right.fileno(), bytearray(16), 0)
    chunk, sent = bytearray(1 << 16), 0
    with pytest.raises(BlockingIOError):  # the socket's buffer fills: no wait, an error
        for _ in range(10_000):
            sent += io.send(left.fileno(), chunk, 0, len(chunk))
    assert sent > 0


def test_bounds_are_refused_before_any_system_call(io, pair):
    left, right = pair
    left.sendall(b"data")
    buf = bytearray(8)
    for start in (-1, 8, 9):  # no room at all would read as the peer's end
        with pytest.raises(ValueError):
            io.recv_into(right.fileno(), buf, start)
    for start, stop in ((-1, 2), (3, 2), (0, 9)):
        with pytest.raises(ValueError):
            io.send(left.fileno(), b"12345678", start, stop)
    assert right.recv(16) == b"data"  # nothing was read, nothing more was sent
    with pytest.raises(ValueError):
        io.put(left.fileno(), 0, 0, 0, b"x", bytearray(8))  # no room for an answer
    right.setblocking(False)
    with pytest.raises(BlockingIOError):
        right.recv(16)  # the put without room sent nothing either


def test_send_sends_the_range_given(io, pair):
    left, right = pair
    assert io.send(left.fileno(), b"0123456789", 2, 7) == 5
    assert io.send(left.fileno(), memoryview(b"abc"), 1, 1) == 0
    assert right.recv(16) == b"23456"


def test_errors_are_the_socket_modules(io, pair):
    left, right = pair
    right.close()
    with pytest.raises(BrokenPipeError):  # and no SIGPIPE
        io.send(left.fileno(), b"x", 0, 1)
    spare = socket.socket()
    fd = spare.fileno()
    spare.close()
    with pytest.raises(OSError):
        io.recv_into(fd, bytearray(8), 0)
    with pytest.raises(OSError):
        io.get(fd, 0, 0, 0, bytearray(64))
    with pytest.raises(ValueError):
        io.recv_into(-1, bytearray(8), 0)
    with pytest.raises(TypeError):
        io.send(left.fileno(), b"x", 0)


def _echo(sock: socket.socket, expect: int, reply: bytes, got: bytearray) -> threading.Thread:
    def run() -> None:
        while len(got) < expect:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            got.extend(chunk)
        sock.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _frame(op: int, body: bytes, status: int = 0) -> bytes:
    return encode_frame(op, body, status)


def test_put_sends_a_put_frame_whole_and_reads_a_plain_answer(io, pair):
    left, right = pair
    page = os.urandom(3 << 20)  # more than the socket buffer takes at once
    oid = (7 << 130) | 5
    expect = msg.encode_put(9, oid, 11, page)
    got = bytearray()
    thread = _echo(right, len(expect), _frame(4, b"\1"), got)
    assert io.put(left.fileno(), 9, oid, 11, memoryview(page), bytearray(64)) == 1
    thread.join(10)
    assert got == expect
    right.sendall(_frame(4, b"\0"))  # a refusal, sent early: read after the send
    assert io.put(left.fileno(), 9, 1, 2, b"p", bytearray(64)) == 0
    assert right.recv(100) == msg.encode_put(9, 1, 2, b"p")


def test_get_sends_a_get_frame_and_reads_the_page_or_a_miss(io, pair):
    left, right = pair
    page = os.urandom(4096)
    got = bytearray()
    reply = _frame(5, page)
    thread = _echo(right, 40, reply[:3000], got)  # the reply in two pieces
    timer = threading.Timer(0.2, right.sendall, [reply[3000:]])
    timer.start()
    assert io.get(left.fileno(), 3, 2**192 - 1, 2**32 - 1, bytearray(8192)) == page
    thread.join(10)
    timer.join(10)
    assert got == msg.encode_handle_op(5, 3, 2**192 - 1, 2**32 - 1)
    right.sendall(_frame(5, b""))
    assert io.get(left.fileno(), 3, 0, 0, bytearray(64)) is None
    right.recv(100)


@pytest.mark.parametrize(
    "reply",
    [
        _frame(4, b"\1", status=3),  # an error reply
        _frame(5, b"\1"),  # another op's
        _frame(4, b"\2"),  # not an answer
        _frame(4, b"\1\1"),  # too long
        _frame(4, b"\1") + _frame(4, b"\1"),  # more than one frame
        b"\4\0\0",  # the peer's end mid-frame
    ],
)
def test_a_put_reply_that_is_not_a_plain_answer_is_left_to_the_caller(io, pair, reply):
    left, right = pair
    right.sendall(reply)
    if len(reply) < 8:
        right.shutdown(socket.SHUT_WR)
    buf = bytearray(64)
    assert io.put(left.fileno(), 1, 2, 3, b"page", buf) == -1 - len(reply)
    assert buf[: len(reply)] == reply


def test_a_reply_larger_than_the_buffer_fills_it_and_is_left_to_the_caller(io, pair):
    left, right = pair
    reply = _frame(5, b"x" * 100)
    right.sendall(reply)
    buf = bytearray(50)
    assert io.get(left.fileno(), 1, 2, 3, buf) == -1 - 50
    assert buf == reply[:50]


def test_a_handle_that_does_not_fit_is_refused_before_sending(io, pair):
    left, right = pair
    for pool, oid, index in ((2**32, 0, 0), (0, 2**192, 0), (0, -1, 0), (0, 0, 2**32), (-1, 0, 0)):
        with pytest.raises(OverflowError):
            io.put(left.fileno(), pool, oid, index, b"p", bytearray(64))
        with pytest.raises(OverflowError):
            io.get(left.fileno(), pool, oid, index, bytearray(64))
    with pytest.raises(TypeError):
        io.get(left.fileno(), 0, "1", 0, bytearray(64))
    with pytest.raises(ValueError):
        io.get(left.fileno(), 0, 0, 0, bytearray(7))
    right.setblocking(False)
    with pytest.raises(BlockingIOError):
        right.recv(16)  # nothing was sent


def test_put_returns_when_the_peer_closed(io, pair):
    left, right = pair
    right.shutdown(socket.SHUT_WR)
    assert io.put(left.fileno(), 0, 0, 0, b"x", bytearray(64)) == -1


def test_a_round_trip_holds_its_buffer_so_it_cannot_be_resized_meanwhile(io, pair):
    left, right = pair
    buf, errors = bytearray(64), []

    def resize() -> None:
        time.sleep(0.1)  # the round trip waits for its reply by now
        try:
            buf.extend(b"x" * 1_000_000)
        except BufferError as exc:
            errors.append(exc)
        right.sendall(_frame(5, b"late"))

    thread = threading.Thread(target=resize, daemon=True)
    thread.start()
    assert io.get(left.fileno(), 0, 0, 0, buf) == b"late"
    thread.join(10)
    assert errors and len(buf) == 64


def _alarm(handler) -> None:
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_a_signal_while_a_round_trip_waits_runs_its_handler(io, pair):
    left, right = pair
    seen: list[int] = []
    old = signal.getsignal(signal.SIGALRM)
    try:
        _alarm(lambda *_: (seen.append(1), right.sendall(_frame(5, b"after"))))
        assert io.get(left.fileno(), 0, 0, 0, bytearray(64)) == b"after"  # went on after it
        assert seen == [1]

        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        _alarm(stop)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):  # a handler's exception ends the call
            io.get(left.fileno(), 0, 0, 0, bytearray(64))
        assert time.monotonic() - started < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("by_fd", [False, True])
def test_frames_read_and_sent_by_descriptor_arrive_as_by_the_socket_module(by_fd, pair):
    """``Decoder.read_from`` and ``OutBuffer.send_to`` with a descriptor (the C module
    where built, the socket module otherwise) deliver the frames written, in order."""
    left, right = pair
    left.setblocking(False)
    right.setblocking(False)
    out, decoder = OutBuffer(size=16), Decoder(initial=64)  # small: reads split frames
    frames = [encode_frame(op, bytes([op]) * op * 300) for op in range(1, 6)]
    out.write_parts(frames[:2])
    out.write_frame(frames[2][:8], frames[2][8:])
    out.write(frames[3] + frames[4])
    got: list[tuple[int, bytes]] = []
    fd_out, fd_in = (left.fileno(), right.fileno()) if by_fd else (-1, -1)
    while out.queued:
        out.send_to(left, fd_out)
        while True:
            try:
                if not decoder.read_from(right, None, fd_in):
                    break
            except BlockingIOError:
                break
            got += [(op, bytes(body)) for op, _s, _t, body in iter(decoder.next_frame, None)]
    assert got == [(op, bytes([op]) * op * 300) for op in range(1, 6)]


def test_an_exchange_starts_from_an_empty_buffer_and_keeps_what_was_received():
    decoder = Decoder()
    buf = decoder.start_exchange()
    reply = _frame(5, b"p" * 100)
    buf[: len(reply)] = reply
    decoder.received(len(reply))
    op, status, _tag, body = decoder.next_frame()
    assert (op, status, bytes(body)) == (5, 0, b"p" * 100)
    decoder.feed(b"\0")  # something pending: an exchange would lose it
    with pytest.raises(WireError, match="pending"):
        decoder.start_exchange()

"""The frame layer: any byte stream splits into the frames that were sent, or WireError."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.wire import HEADER_SIZE, Decoder, OutBuffer, WireError, encode_frame
from tmem.wire import frames as wire_frames

frames = st.lists(
    st.tuples(
        st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535), st.binary(max_size=300)
    ),
    max_size=8,
)


def drain(decoder: Decoder) -> list[tuple[int, int, int, bytes]]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        op, status, tag, body = frame
        out.append((op, status, tag, bytes(body)))
    return out


@given(frames, st.lists(st.integers(1, 64), min_size=1))
def test_any_chunking_of_a_stream_gives_back_the_frames_sent(sent, cuts):
    stream = b"".join(encode_frame(op, body, status, tag) for op, status, tag, body in sent)
    decoder, got, pos, i = Decoder(max_body=1024), [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        room = decoder.recv_buffer()
        chunk = stream[pos : pos + min(step, len(room))]
        room[: len(chunk)] = chunk
        decoder.received(len(chunk))
        pos, i = pos + len(chunk), i + 1
        got += drain(decoder)
    assert got == [(op, status, tag, body) for op, status, tag, body in sent]
    assert decoder.buffered == 0


def test_a_frame_over_the_limit_is_refused_from_its_header_alone():
    decoder = Decoder(max_body=100)
    decoder.feed(encode_frame(4, b"x" * 101)[:HEADER_SIZE])
    with pytest.raises(WireError, match="exceeds"):
        decoder.next_frame()


def test_a_frame_at_the_limit_is_accepted():
    decoder = Decoder(max_body=100)
    decoder.feed(encode_frame(4, b"x" * 100))
    assert bytes(decoder.next_frame()[3]) == b"x" * 100


def test_the_buffer_grows_for_a_frame_larger_than_it():
    decoder = Decoder(max_body=8 << 20)
    decoder.feed(encode_frame(1, b"first") + encode_frame(2, b"second")[:5])
    assert bytes(decoder.next_frame()[3]) == b"first"
    decoder.feed(encode_frame(2, b"second")[5:])
    assert bytes(decoder.next_frame()[3]) == b"second"
    big = bytes(range(256)) * (3 << 12)  # 3 MiB
    stream = memoryview(encode_frame(9, big))
    while stream:
        room = decoder.recv_buffer()
        n = min(len(room), len(stream))
        room[:n] = stream[:n]
        decoder.received(n)
        stream = stream[n:]
    assert bytes(decoder.next_frame()[3]) == big


def test_an_incomplete_frame_waits_for_more_bytes():
    decoder = Decoder()
    frame = encode_frame(5, b"abcdef")
    decoder.feed(frame[:-1])
    assert decoder.next_frame() is None
    decoder.feed(frame[-1:])
    assert bytes(decoder.next_frame()[3]) == b"abcdef"


def test_receiving_more_than_the_buffer_holds_is_refused():
    decoder = Decoder()
    room = decoder.recv_buffer()
    with pytest.raises(WireError):
        decoder.received(len(room) + 1)


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(8, 64))
def test_garbage_gives_frames_or_wire_error_and_nothing_else(data, limit):
    decoder = Decoder(max_body=limit)
    decoder.feed(data)
    try:
        for op, _status, _tag, body in iter(decoder.next_frame, None):
            assert len(body) <= limit and 0 <= op < 256
    except WireError:
        pass


class Trickle:
    """A socket that takes at most the next of ``takes`` bytes per send or sendmsg."""

    def __init__(self, takes: list[int]) -> None:
        self.got = bytearray()
        self.takes = iter(takes)
        self.gathered = 0  # sendmsg calls

    def send(self, data: memoryview) -> int:
        return self._take(bytes(data))

    def sendmsg(self, buffers: list) -> int:
        assert len(buffers) <= 1 + wire_frames.GATHER_PARTS  # within the kernel's IOV_MAX
        self.gathered += 1
        return self._take(b"".join(buffers))

    def _take(self, data: bytes) -> int:
        n = min(len(data), next(self.takes, len(data)))
        self.got += data[:n]
        return n


#: Writes of every kind: bytes (write), a list (write_parts), a tuple (write_frame),
#: a dict (write_gathered of its one list), and integers (a send of at most that many).
steps = st.lists(
    st.one_of(
        st.binary(max_size=100),
        st.integers(0, 300),
        st.lists(st.binary(max_size=70), max_size=5),
        st.tuples(st.binary(max_size=9), st.binary(max_size=100)),
        st.fixed_dictionaries({"gather": st.lists(st.binary(max_size=90), max_size=8)}),
    ),
    max_size=60,
)


@given(steps)
def test_sends_of_any_size_deliver_every_write_in_order(steps):
    """Partial sends through ``send_to`` (``send``, and ``sendmsg`` while parts are
    queued by reference) deliver what was written in order, whatever the mix."""
    out, sock, written = OutBuffer(size=16, gather=64), Trickle([]), bytearray()
    for step in steps:  # small batches are gathered too (gather=64)
        if isinstance(step, int):
            sock.takes = iter([step])
            if out.queued:
                out.send_to(sock)
        else:
            _write(out, step, written)
        assert len(out) == len(written) - len(sock.got)
    sock.takes = iter([])
    while out.queued:
        out.send_to(sock)
    assert sock.got == written
    assert not out._parts  # drained: back to the buffer alone


def _write(out: OutBuffer, step: object, written: bytearray) -> None:
    if isinstance(step, bytes):
        out.write(step)
        written += step
    elif isinstance(step, list):
        out.write_parts(step)
        written += b"".join(step)
    elif isinstance(step, tuple):
        out.write_frame(*step)
        written += step[0] + step[1]
    else:
        parts = step["gather"]  # type: ignore[index]
        out.write_gathered(parts)
        written += b"".join(parts)


@given(steps)
def test_the_output_buffer_sends_everything_written_in_order(steps):
    """Writes (of one buffer, of parts, of a frame's head and body, of parts queued
    by reference) and partial sends (integers: bytes the socket took) in any order."""
    out, written, sent = OutBuffer(size=16, gather=64), bytearray(), bytearray()
    for step in steps:
        if isinstance(step, int):
            take = bytes(out.pending()[:step])
            out.consumed(len(take))
            sent += take
        else:
            _write(out, step, written)
        assert len(out) == len(written) - len(sent)
    sent += out.pending()
    assert sent == written


def test_gathered_parts_are_sent_from_where_they_are_not_copied():
    """A batch's pages are queued by reference: the buffer does not grow for them,
    and more parts than one sendmsg may carry still all go, in order."""
    pages = [bytes([i % 251]) * 4096 for i in range(1200)]
    out, sock = OutBuffer(size=4096), Trickle([100_000] * 200)
    out.write(b"head")
    out.write_gathered(pages)
    out.write(b"tail")
    assert out.capacity == 4096 and len(out) == 8 + 1200 * 4096
    while out.queued:
        out.send_to(sock)
    assert sock.gathered >= 1200 // wire_frames.GATHER_PARTS
    assert sock.got == b"head" + b"".join(pages) + b"tail"


def test_reads_and_sends_go_through_the_socket_in_order():
    """``Decoder.read_from`` and ``OutBuffer.send_to``: what one sends, the other frames."""
    left, right = socket.socketpair()
    with left, right:
        out, decoder = OutBuffer(size=16), Decoder()
        frames = [encode_frame(op, bytes([op]) * op * 100) for op in range(1, 6)]
        out.write_parts(frames[:2])
        out.write_frame(frames[2][:8], frames[2][8:])
        out.write(frames[3] + frames[4])
        out.write_gathered([frames[0]] * 40)  # sent with sendmsg
        out.write(frames[1])
        while out.queued:
            out.send_to(left)
        left.shutdown(socket.SHUT_WR)
        while decoder.read_from(right):
            pass
        got = list(iter(decoder.next_frame, None))
    assert [(op, bytes(body)) for op, _s, _t, body in got] == [
        (op, bytes([op]) * op * 100) for op in [1, 2, 3, 4, 5] + [1] * 40 + [2]
    ]

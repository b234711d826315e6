"""Single pages through the C round trip (``tmem.wire.sockio``) answer as through the
socket module; the daemon's reads and sends by descriptor never reach another connection.

A client connected without a timeout makes its single-page calls in one call of
the C module where it was built; one with a timeout uses the socket module's
calls.  Every answer, error and miss must be the same both ways, and a reply the
C module does not take as a plain answer (an error, say) must leave the stream
in step.  The pure-Python run has no C module: there both clients take the
socket module's path, and the same checks hold.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

import tmem
from tmem.daemon.dispatch import Session
from tmem.daemon.server import Connection
from tmem.wire import Decoder, Op, encode_frame, sockio
from tmem.wire import messages as msg

PAGE = 4096


def _calls(client, pool: int) -> list[object]:
    """The answers (or error classes) of a sequence of single-page calls."""
    out: list[object] = []
    big = (1 << 191) | 12345  # an object id of three words
    steps = [
        lambda: client.put_page(pool, 1, 2, b"a" * PAGE),
        lambda: client.get_page(pool, 1, 2),
        lambda: client.put_page(pool, big, 2**32 - 1, memoryview(bytearray(b"b" * PAGE))),
        lambda: client.get_page(pool, big, 2**32 - 1),
        lambda: client.get_page(pool, 1, 3),  # a miss
        lambda: client.put_page(pool + 1000, 1, 2, b"c" * PAGE),  # the daemon's error reply
        lambda: client.get_page(pool + 1000, 1, 2),
        lambda: client.put_page(pool, 1, 2, b"d" * (PAGE + 1)),  # refused by the daemon
        lambda: client.get_page(pool, 1, 2),  # the stream is still in step
        lambda: client.flush_page(pool, 1, 2),
        lambda: client.get_page(pool, 1, 2),
    ]
    for step in steps:
        try:
            out.append(step())
        except tmem.TmemError as exc:
            out.append(type(exc))
    return out


def test_single_pages_answer_alike_through_the_c_round_trip_and_the_socket_module(daemon):
    fast = tmem.connect(daemon.address, name="fast")
    plain = tmem.connect(daemon.address, name="plain", timeout=30)
    try:
        assert fast._chan._fd == (-1 if sockio.PUT is None else fast._chan.sock.fileno())
        assert plain._chan._fd == -1  # a socket with a timeout: the socket module's calls
        answers = [_calls(c, c.new_pool(persistent=True, page_size=PAGE)) for c in (fast, plain)]
        assert answers[0] == answers[1]
        assert answers[0][:5] == [True, b"a" * PAGE, True, b"b" * PAGE, None]
        assert answers[0][5:7] == [tmem.NoSuchPool, tmem.NoSuchPool]
        assert answers[0][8] == b"a" * PAGE and answers[0][10] is None
    finally:
        fast.close()
        plain.close()


class _Silent:
    """A Unix server that answers the hello and then nothing."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(1)
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.conn, _ = self.listener.accept()
        decoder = Decoder()
        while decoder.next_frame() is None:
            decoder.received(self.conn.recv_into(decoder.recv_buffer()))
        body = msg.encode_hello_reply("vm", 1 << 20)
        self.conn.sendall(encode_frame(Op.HELLO, body))

    def close(self) -> None:
        self.thread.join(5)
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_a_signal_that_raises_while_a_get_waits_ends_the_call_and_the_connection(tmp_path):
    server = _Silent(str(tmp_path / "silent.sock"))
    client = tmem.connect("unix:" + str(tmp_path / "silent.sock"), name="vm")

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.get_page(0, 1, 2)
        assert time.monotonic() - started < 5
        with pytest.raises(tmem.ConnectionLost):  # out of step: closed, not reused
            client.put_page(0, 1, 2, b"x" * PAGE)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        server.close()


def test_a_closed_connections_number_reaches_no_later_connection(daemon):
    """Reads and sends go by descriptor number where the C module is built: once a
    connection is closed, a send queued for it must not reach the connection that
    is given its number next."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    conn = Connection(ours, Session(None))
    number = conn.fd
    daemon._close(conn)  # not in the loop's table: closing it touches nothing else
    peer.close()
    later, later_peer = socket.socketpair()  # the lowest free number: the closed one's
    try:
        assert later.fileno() == number
        conn.out.write(b"not yours")
        daemon._send(conn)
        later_peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            later_peer.recv(64)
        later.setblocking(False)
        later_peer.sendall(b"theirs")
        time.sleep(0.05)
        daemon._read(conn)
        assert later.recv(64) == b"theirs"  # still there: nothing read it
    finally:
        later.close()
        later_peer.close()

"""The daemon end to end: pools die with their connection, bad frames cost only
their own connection, pipelining and batches, ConnectionLost."""

from __future__ import annotations

import os
import socket
import time

import pytest

import tmem
from tmem.wire import HEADER, Decoder, Op, encode_frame
from tmem.wire import messages as msg

PAGE = 4096


def page(n: int, size: int = PAGE) -> bytes:
    return n.to_bytes(4, "little") * (size // 4)


def raw_socket(server) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(server.config.socket)
    return sock


def read_frames(sock: socket.socket) -> list[tuple[int, int, bytes]]:
    """Every frame the daemon sends until it closes the connection."""
    decoder, frames = Decoder(), []
    while n := sock.recv_into(decoder.recv_buffer()):
        decoder.received(n)
        while (frame := decoder.next_frame()) is not None:
            frames.append((frame[0], frame[1], bytes(frame[3])))
    return frames


def read_some(sock: socket.socket, count: int) -> list[tuple[int, int, bytes]]:
    """The next ``count`` frames the daemon sends."""
    decoder, frames = Decoder(), []
    while len(frames) < count:
        decoder.received(sock.recv_into(decoder.recv_buffer()))
        while (frame := decoder.next_frame()) is not None:
            frames.append((frame[0], frame[1], bytes(frame[3])))
    return frames


def pages_held(admin) -> int:
    return admin.stats()["pages"]


def test_closing_a_client_frees_its_private_pools_before_close_returns(daemon):
    admin = tmem.admin(daemon.address)
    client = tmem.connect(daemon.address, name="vm1")
    for persistent in (True, False):
        pool = client.new_pool(persistent=persistent)
        assert all(client.put_pages(pool, [(1, i, page(i)) for i in range(50)]))
    assert pages_held(admin) == 100
    client.close()
    assert pages_held(admin) == 0
    assert "vm1" not in admin.stats()["clients"]


def test_a_vanished_client_has_its_private_pools_freed(daemon):
    admin = tmem.admin(daemon.address)
    sock = raw_socket(daemon)
    sock.sendall(msg.encode_hello("gone"))
    sock.sendall(msg.encode_new_pool(True, False, None, PAGE))
    sock.sendall(msg.encode_put(0, 1, 1, page(1)))
    assert [frame[:2] for frame in read_some(sock, 3)] == [
        (Op.HELLO, 0),
        (Op.NEW_POOL, 0),
        (Op.PUT, 0),
    ]
    assert pages_held(admin) == 1
    sock.close()  # no goodbye
    for _ in range(200):
        if pages_held(admin) == 0:
            break
        time.sleep(0.01)
    assert pages_held(admin) == 0 and "gone" not in admin.stats()["clients"]


def test_a_session_leaves_the_registry_of_sessions_when_its_connection_ends(daemon):
    """Sessions are found by client name (for a migration's hold) only while connected:
    one that said goodbye and one that vanished are both forgotten."""
    sessions = daemon.dispatcher.transfers.sessions
    polite = tmem.connect(daemon.address, name="polite")
    sock = raw_socket(daemon)
    sock.sendall(msg.encode_hello("vanishing"))
    assert [frame[:2] for frame in read_some(sock, 1)] == [(Op.HELLO, 0)]
    names = {name: session.client.name for name, session in sessions.items()}
    vanishing = polite.name.replace("polite", "vanishing")  # under the same uid's prefix
    assert names == {polite.name: polite.name, vanishing: vanishing}
    polite.close()
    sock.close()  # no goodbye
    deadline = time.monotonic() + 30  # the daemon's thread may run late on a loaded machine
    while sessions and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sessions == {}
    again = tmem.connect(daemon.address, name="polite")  # a new session of the same name
    assert [s.client.name for s in sessions.values()] == [again.name]
    again.close()


def test_the_name_of_a_connected_client_cannot_be_taken(daemon):
    first = tmem.connect(daemon.address, name="vm1")
    with pytest.raises(tmem.InvalidArgument):
        tmem.connect(daemon.address, name="vm1")
    first.close()
    tmem.connect(daemon.address, name="vm1").close()  # free again


def test_a_client_reaches_only_its_own_pools(daemon):
    a = tmem.connect(daemon.address, name="a")
    b = tmem.connect(daemon.address, name="b")
    pool = a.new_pool(persistent=True)
    assert a.put_page(pool, 1, 1, page(1))
    with pytest.raises(tmem.NoSuchPool):
        b.get_page(pool, 1, 1)
    mine = b.new_pool(persistent=True)
    assert mine == pool and b.get_page(mine, 1, 1) is None  # same number, other pool
    assert a.get_page(pool, 1, 1) == page(1)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        encode_frame(Op.PUT, b"x" * 40),  # a page before the hello
        msg.encode_hello("x")[:-1] + b"",  # then EOF in the middle of the hello
        HEADER.pack(Op.HELLO, 0, 0, 2**32 - 1),  # oversized
        encode_frame(Op.HELLO, b"TMEM" + b"\x63\x00" + b"\0" * 4),  # version 99
    ],
)
def test_a_bad_first_frame_gets_an_error_and_the_connection_closes(daemon, garbage):
    good = tmem.connect(daemon.address, name="good")
    pool = good.new_pool(persistent=True)
    sock = raw_socket(daemon)
    sock.sendall(garbage)
    sock.shutdown(socket.SHUT_WR)
    frames = read_frames(sock)  # returns only once the daemon closed the connection
    assert all(status != 0 for _, status, _ in frames)
    assert good.put_page(pool, 1, 2, page(2)) and good.get_page(pool, 1, 2) == page(2)


@pytest.mark.parametrize(
    "bad",
    [
        encode_frame(200, b""),  # unknown op
        encode_frame(Op.GET, b"short"),  # malformed body
        encode_frame(Op.HELLO, b""),  # a second hello
        HEADER.pack(Op.PUT, 0, 0, 64 << 20),  # oversized
    ],
)
def test_a_bad_frame_after_the_hello_gets_a_protocol_error_and_a_close(daemon, bad):
    sock = raw_socket(daemon)
    sock.sendall(msg.encode_hello("vm1") + bad)
    frames = read_frames(sock)
    assert frames[0][:2] == (Op.HELLO, 0)
    assert frames[-1][1] == tmem.ProtocolError.code and len(frames) == 2
    tmem.connect(daemon.address, name="vm1").close()  # its client was released


def test_an_error_of_the_contract_leaves_the_connection_open(daemon):
    client = tmem.connect(daemon.address, name="vm1")
    with pytest.raises(tmem.NoSuchPool):
        client.put_page(5, 1, 1, page(1))
    pool = client.new_pool()
    with pytest.raises(tmem.InvalidArgument):
        client.put_page(pool, 1, 1, b"short")
    assert client.put_page(pool, 1, 1, page(1)) is True


def test_pipelined_requests_are_answered_in_order(daemon):
    sock = raw_socket(daemon)
    frames = [msg.encode_hello("pipe"), msg.encode_new_pool(True, False, None, 512)]
    frames += [msg.encode_put(0, 9, i, page(i, 512)) for i in range(300)]
    frames += [msg.encode_handle_op(Op.GET, 0, 9, i) for i in range(300)]
    sock.sendall(b"".join(frames))
    sock.shutdown(socket.SHUT_WR)
    replies = read_frames(sock)
    assert [op for op, _, _ in replies] == [Op.HELLO, Op.NEW_POOL] + [Op.PUT] * 300 + [Op.GET] * 300
    assert [body for _, _, body in replies[-300:]] == [page(i, 512) for i in range(300)]


@pytest.mark.parametrize("size", [512, 65536])
def test_large_batches_cross_in_several_frames_and_come_back_whole(daemon, size):
    client = tmem.connect(daemon.address, name="vm1")
    pool = client.new_pool(persistent=True, page_size=size)
    count = (3 << 20) // size + 7  # more than one frame's worth
    assert client.put_pages(pool, [(7, i, page(i, size)) for i in range(count)]) == [True] * count
    handles = [(7, i) for i in range(count)] + [(8, 0)]
    assert client.get_pages(pool, handles) == [page(i, size) for i in range(count)] + [None]


def test_a_reader_that_never_reads_does_not_stall_the_others(daemon):
    hog = raw_socket(daemon)
    hog.sendall(msg.encode_hello("hog") + msg.encode_new_pool(True, False, None, 65536))
    hog.sendall(msg.encode_put(0, 1, 1, os.urandom(65536)))
    get = msg.encode_handle_op(Op.GET, 0, 1, 1)
    hog.setblocking(False)
    sent = 0
    try:
        for _ in range(20000):  # asks for far more than the daemon will buffer (>1 GiB)
            sent += hog.send(get * 64)
    except BlockingIOError:
        pass
    assert sent < 20000 * 64 * len(get)  # the daemon stopped reading the hog
    other = tmem.connect(daemon.address, name="other")
    pool = other.new_pool(persistent=True)
    assert other.put_page(pool, 1, 1, page(1)) and other.get_page(pool, 1, 1) == page(1)
    hog.close()


def test_calls_raise_connection_lost_once_the_daemon_is_gone(start_daemon):
    server = start_daemon(capacity=1 << 20)
    client = tmem.connect(server.address, name="vm1")
    pool = client.new_pool(persistent=True)
    server.stop()
    for _ in range(200):
        if not os.path.exists(server.config.socket):
            break
        time.sleep(0.01)
    with pytest.raises(tmem.ConnectionLost):
        client.put_page(pool, 1, 1, page(1))
    with pytest.raises(tmem.ConnectionLost):
        client.get_page(pool, 1, 1)  # and it stays lost
    with pytest.raises(tmem.ConnectionLost):
        tmem.connect(server.address, name="late")


def test_addresses_that_are_not_unix_or_tcp_are_refused():
    for address in ("http://x", "tcp://nohost", "tcp://h:port", "relative/path"):
        with pytest.raises(tmem.InvalidArgument):
            tmem.connect(address, name="x")


def test_the_admin_sets_a_clients_compression_over_the_wire(start_daemon):
    server = start_daemon(capacity=16 << 20, compress="lz4")
    admin = tmem.admin(server.address)
    client = tmem.connect(server.address, name="vm1")
    admin.set_client("vm1", compress="zstd", weight=3)
    assert admin.stats()["clients"]["vm1"]["compress"] == "zstd"
    with pytest.raises(tmem.InvalidArgument):
        admin.set_client("vm1", compress="gzip-9")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 1, bytes(PAGE)) and client.get_page(pool, 1, 1) == bytes(PAGE)
    assert admin.stats()["clients"]["vm1"]["weight"] == 3


def test_a_connection_without_a_hello_is_closed_after_the_timeout(start_daemon):
    server = start_daemon(capacity=1 << 20, hello_timeout=0.5)
    good = tmem.connect(server.address, name="good")  # a hello in time keeps its connection
    idle = raw_socket(server)
    started = time.monotonic()
    assert idle.recv(1) == b""  # the daemon hung up on the silent one
    assert 0.4 <= time.monotonic() - started < 5
    time.sleep(0.5)
    pool = good.new_pool()
    assert good.put_page(pool, 1, 1, page(1))


def test_the_ops_the_dispatcher_writes_as_plain_ints_are_the_protocols():
    from tmem.daemon import dispatch

    assert (dispatch._PUT, dispatch._GET, dispatch._FLUSH_PAGE) == (Op.PUT, Op.GET, Op.FLUSH_PAGE)

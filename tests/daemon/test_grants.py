"""What a connection holds stays within its grant of the transfer budget, however it
pipelines large requests without reading the replies (a daemon in a thread, so that
each connection's buffers can be looked at)."""

from __future__ import annotations

import socket
import threading
import time

import tmem
from tmem.daemon.budget import READ_SLACK, SMALL_OUT, grant_size, granted_out
from tmem.wire import DEFAULT_MAX_BODY, HEADER, Op
from tmem.wire import messages as msg

from .hostile import PAGE, is_closed, page, raw

#: GET_PAGES of about 2 MiB of replies: one page named again and again.
GETS = msg.encode_get_pages(0, [(1, 1)] * (DEFAULT_MAX_BODY // (PAGE + 1) // 2))


def greedy(address: str, *requests: bytes) -> socket.socket:
    """A connection that puts page 1 in a pool of its own, then sends ``requests``
    (those the socket takes at once) and reads none of the replies."""
    sock = raw(address)
    sock.sendall(msg.encode_hello("greedy") + msg.encode_new_pool(True, False, None, PAGE))
    sock.sendall(msg.encode_put(0, 1, 1, page(1)))
    sock.setblocking(False)
    for request in requests:
        try:
            sock.send(request)
        except BlockingIOError:
            break
    return sock


def test_a_connection_that_reads_nothing_holds_no_more_than_its_grant(start_daemon):
    server = start_daemon(capacity=16 << 20)
    small = msg.encode_handle_op(Op.GET, 0, 1, 1) * 8
    sock = greedy(server.address, GETS, small, GETS, small, GETS)
    time.sleep(0.5)
    (conn,) = [c for c in server.conns.values() if c.session.greeted]
    max_frame = server.config.max_frame
    assert conn.grant == grant_size(max_frame)
    # out: replies queued up to a frame, and a large one only after a short queue
    assert conn.out.capacity <= granted_out(max_frame) == max_frame + SMALL_OUT
    assert conn.out.queued > max_frame // 3  # it did answer, up to its limit
    assert conn.decoder.capacity <= max_frame + HEADER.size + READ_SLACK
    sock.close()


def test_a_connection_that_keeps_a_grant_others_wait_for_and_reads_nothing_is_closed(
    start_daemon,
):
    max_frame = DEFAULT_MAX_BODY
    server = start_daemon(  # no peer administers: nobody may overdraw the budget
        capacity=16 << 20, transfer_budget=grant_size(max_frame), grant_timeout=0.5, admin_uids=[]
    )
    sock = greedy(server.address, *[GETS] * 4)
    time.sleep(0.3)
    assert [c.grant for c in server.conns.values() if c.session.greeted] == [
        grant_size(max_frame)
    ]  # the only grant of the budget
    good = tmem.connect(server.address, name="good")
    pool = good.new_pool(persistent=True)
    assert good.put_page(pool, 1, 1, page(2))
    answered: list[object] = []
    # a GET_PAGES reply may be larger than a page: it needs the grant the other holds
    getter = threading.Thread(
        target=lambda: answered.append(good.get_pages(pool, [(1, 1)] * 4)), daemon=True
    )
    getter.start()
    getter.join(10.0)
    assert answered == [[page(2)] * 4], "a grant hoarder kept a large get waiting"
    assert is_closed(sock)
    good.close()

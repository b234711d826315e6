"""What a connection holds stays within its grant of the transfer budget, however it
pipelines large requests without reading the replies (a daemon in a thread, so that
each connection's buffers can be looked at)."""

from __future__ import annotations

import time

from tmem.daemon.budget import READ_SLACK, SMALL_OUT, grant_size, granted_out
from tmem.wire import DEFAULT_MAX_BODY, HEADER, Op
from tmem.wire import messages as msg

from .hostile import PAGE, page, raw


def test_a_connection_that_reads_nothing_holds_no_more_than_its_grant(start_daemon):
    server = start_daemon(capacity=16 << 20)
    sock = raw(server.address)
    sock.sendall(msg.encode_hello("greedy") + msg.encode_new_pool(True, False, None, PAGE))
    sock.sendall(msg.encode_put(0, 1, 1, page(1)))
    half = DEFAULT_MAX_BODY // (PAGE + 1) // 2  # GET_PAGES of about 2 MiB of replies
    gets = msg.encode_get_pages(0, [(1, 1)] * half)
    small = msg.encode_handle_op(Op.GET, 0, 1, 1) * 8
    sock.setblocking(False)
    for request in (gets, small, gets, small, gets):  # none of the replies is read
        try:
            sock.send(request)
        except BlockingIOError:
            break
    time.sleep(0.5)
    (conn,) = [c for c in server.conns.values() if c.session.greeted]
    max_frame = server.config.max_frame
    assert conn.grant == grant_size(max_frame)
    # out: replies queued up to a frame, and a large one only after a short queue
    assert conn.out.capacity <= granted_out(max_frame) == max_frame + SMALL_OUT
    assert conn.out.queued > max_frame // 3  # it did answer, up to its limit
    assert conn.decoder.capacity <= max_frame + HEADER.size + READ_SLACK
    sock.close()

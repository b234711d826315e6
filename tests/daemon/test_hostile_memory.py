"""What a hostile peer can make a real ``tmem serve`` hold: bounded before and after
the hello, whatever it sends or leaves unread (resident memory from /proc)."""

from __future__ import annotations

import os
import socket

import tmem
from tmem.wire import HEADER, Op
from tmem.wire import messages as msg

from .hostile import PAGE, frames_until_closed, page, raw, settle

MiB = 1 << 20


def test_connections_without_a_hello_hold_only_a_few_kib(serve_process):
    proc, address = serve_process("--capacity", "16M", "--compress", "none")
    good = tmem.connect(address, name="good")
    pool = good.new_pool(persistent=True)
    before = settle(proc.pid)
    silent = [raw(address) for _ in range(150)]
    # a header that announces a body as large as a frame may be after the hello
    announcing = []
    for _ in range(40):
        sock = raw(address)
        sock.sendall(HEADER.pack(Op.HELLO, 0, 0, (4 << 20) + (64 << 10)) + b"T")
        announcing.append(sock)
    for sock in announcing:  # refused at the header, without buffering the body
        frames = frames_until_closed(sock)
        assert frames and frames[-1][1] == tmem.ProtocolError.code
    assert good.put_page(pool, 1, 1, page(1)) and good.get_page(pool, 1, 1) == page(1)
    grown = settle(proc.pid) - before
    # 150 silent connections: 4 KiB in and 4 KiB out each, plus the objects around them
    assert grown < 8 * MiB, f"{len(silent)} silent connections grew the daemon by {grown}"
    for sock in silent + announcing:
        sock.close()


def test_a_peer_that_does_not_read_its_replies_holds_at_most_the_output_limit(serve_process):
    proc, address = serve_process("--capacity", "16M", "--compress", "none")
    hog = raw(address)
    hog.sendall(msg.encode_hello("hog") + msg.encode_new_pool(True, False, None, 65536))
    hog.sendall(msg.encode_put(0, 1, 1, os.urandom(65536)))
    before = settle(proc.pid)
    get = msg.encode_handle_op(Op.GET, 0, 1, 1)
    hog.setblocking(False)
    sent = 0
    for _ in range(40):  # 2,560 gets: 160 MiB of replies if the daemon read them all
        try:
            sent += hog.send(get * 64)
        except BlockingIOError:
            break
    grown = settle(proc.pid, 0.5) - before
    assert grown < 40 * MiB, f"an unread reader grew the daemon by {grown}"
    other = tmem.connect(address, name="other")
    pool = other.new_pool(persistent=True)
    assert other.put_page(pool, 1, 1, page(1)) and other.get_page(pool, 1, 1) == page(1)
    hog.close()


def test_one_request_cannot_ask_for_a_reply_larger_than_a_frame(serve_process):
    proc, address = serve_process("--capacity", "16M", "--compress", "none")
    client = tmem.connect(address, name="vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 1, page(1))
    before = settle(proc.pid)
    sock = raw(address)
    sock.sendall(msg.encode_hello("greedy") + msg.encode_new_pool(True, False, None, PAGE))
    sock.sendall(msg.encode_put(0, 1, 1, page(1)))
    # one page named 40,000 times: a 160 MiB reply if it were built
    sock.sendall(msg.encode_get_pages(0, [(1, 1)] * 40_000))
    sock.shutdown(socket.SHUT_WR)
    frames = frames_until_closed(sock)
    assert [f[:2] for f in frames[:3]] == [(Op.HELLO, 0), (Op.NEW_POOL, 0), (Op.PUT, 0)]
    assert frames[3][:2] == (Op.GET_PAGES, tmem.InvalidArgument.code)
    assert b"per batch" in frames[3][2]
    grown = settle(proc.pid) - before
    assert grown < 24 * MiB, f"one batch grew the daemon by {grown}"
    # a batch within the bound is served
    assert client.get_pages(pool, [(1, 1)] * 200) == [page(1)] * 200

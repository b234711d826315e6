"""Batches through a daemon answer as the embedded host does, and their replies (sent
from the pages themselves, gathered) reach a slow reader whole and in order."""

from __future__ import annotations

import random
import socket

import tmem
from tmem.wire import Decoder, Op
from tmem.wire import messages as msg

PAGE = 4096


def page(rng: random.Random) -> bytes:
    return rng.randbytes(PAGE)


def _outcome(result: object) -> object:
    """A result to compare: the error's class for an error, else the result."""
    return type(result) if isinstance(result, Exception) else result


def _handle(rng: random.Random) -> tuple[int, int]:
    oid = rng.choice([1, 2, 3, 2**64 + 1, 2**191 + 5])  # small ids and ids of three words
    return oid, rng.randrange(200)


def test_random_batches_through_a_daemon_match_the_embedded_host(start_daemon):
    """Batches of 1 to 300 items (more than a slice, replies over the gathering
    threshold), misses, bad items and single calls in between, on a persistent
    and a private ephemeral pool: the daemon answers exactly as an embedded host."""
    rng = random.Random(14)
    daemon = start_daemon(capacity=64 << 20)
    host = tmem.Host(64 << 20, compress=None)
    clients = [host.connect("vm"), tmem.connect(daemon.address, name="vm")]
    pools = [[c.new_pool(persistent=True), c.new_pool()] for c in clients]
    try:
        for _ in range(60):
            kind, which, count = rng.randrange(4), rng.randrange(2), rng.randrange(1, 301)
            if kind == 0:
                items: list = [(*_handle(rng), page(rng)) for _ in range(count)]
                if rng.random() < 0.2:
                    items[rng.randrange(count)] = (1, -1, page(rng))  # a bad handle
                calls = [lambda c, p, items=items: c.put_pages(p, items, errors="return")]
            elif kind == 1:
                handles: list = [_handle(rng) for _ in range(count)]
                if rng.random() < 0.2:
                    handles[rng.randrange(count)] = (2**192, 0)  # a bad handle
                calls = [lambda c, p, handles=handles: c.get_pages(p, handles, errors="return")]
            elif kind == 2:
                oid, index = _handle(rng)
                data = page(rng)
                calls = [lambda c, p, h=(oid, index, data): c.put_page(p, *h)]
            else:
                oid, index = _handle(rng)
                calls = [lambda c, p, h=(oid, index): c.get_page(p, *h)]
            for call in calls:
                got = [
                    [_outcome(r) for r in out] if isinstance(out, list) else out
                    for out in (call(c, ps[which]) for c, ps in zip(clients, pools, strict=True))
                ]
                assert got[0] == got[1]
        every = [(o, i) for o in (1, 2, 3, 2**64 + 1, 2**191 + 5) for i in range(200)]
        ends = [c.get_pages(ps[0], every) for c, ps in zip(clients, pools, strict=True)]
        assert ends[0] == ends[1]  # what both hold at the end
    finally:
        for c in clients:
            c.close()
        host.close()


def _frames(sock: socket.socket, count: int) -> list[tuple[int, int, int, bytes]]:
    """The next ``count`` reply frames, read a little at a time."""
    decoder, got = Decoder(), []
    while len(got) < count:
        data = sock.recv(3000)
        assert data, "the daemon closed the connection"
        decoder.feed(data)
        while (frame := decoder.next_frame()) is not None:
            op, status, tag, body = frame
            got.append((op, status, tag, bytes(body)))
    return got


def test_a_large_batch_reply_reaches_a_slow_reader_whole_and_before_later_replies(daemon):
    """A reply of 300 pages to a reader with a small receive buffer is sent in many
    partial sends; the replies to requests pipelined after it come after it."""
    rng = random.Random(7)
    pages = [page(rng) for _ in range(300)]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(daemon.config.socket)
    with sock:
        sock.sendall(msg.encode_hello("slow"))
        sock.sendall(msg.encode_new_pool(True, False, None, PAGE))
        hello, pool_reply = _frames(sock, 2)
        pool = msg.decode_pool(memoryview(pool_reply[3]))
        items = [(5, i, pages[i]) for i in range(300)]
        sock.sendall(b"".join(msg.encode_put_pages(pool, PAGE, items)))
        (put_reply,) = _frames(sock, 1)
        assert msg.decode_batch_reply(memoryview(put_reply[3]), 300)[0] == b"\1" * 300
        request = msg.encode_get_pages(pool, [(5, i) for i in range(299, -1, -1)])
        after = msg.encode_handle_op(Op.GET, pool, 5, 42)
        sock.sendall(request + after + msg.encode_handle_op(Op.GET, pool, 6, 0))
        batch, single, miss = _frames(sock, 3)
    assert (batch[0], batch[1]) == (Op.GET_PAGES, 0)
    results, message, data = msg.decode_batch_reply(memoryview(batch[3]), 300)
    assert results == b"\1" * 300 and message == ""
    assert bytes(data) == b"".join(reversed(pages))
    assert (single[0], single[3]) == (Op.GET, pages[42])
    assert (miss[0], miss[3]) == (Op.GET, b"")

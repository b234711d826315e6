"""The floor for the daemon: a bare Python epoll echo server and its client.

The server answers each request frame with a reply of the length the request
asks for, and does nothing else: no decoding, no storage.  The client sends
frames of exactly the sizes the tmem wire protocol uses (a put carries a
handle and a page, a get's reply carries a page, batches likewise) over the
same kind of socket, so a tmem daemon's latency and throughput can be set
against what one Python process with one event loop can do at all.

A request is ``length:u32 reply:u32`` then ``length`` bytes; the reply is
``reply`` bytes.  A request of neither body nor reply only calls
``os.getppid()``, where ``bench/daemon_instructions.py`` has valgrind count.

    python bench/floor.py SOCKET_PATH      # serve until killed
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
from typing import Any

REQUEST = struct.Struct("<II")
HEADER = 8  # tmem's frame header
HANDLE = 32  # pool, oid, index
ITEM = 28  # a batch item: oid, index
BATCH_HEAD = 12  # pool, count, page size


def serve(path: str) -> None:
    """Echo server on a Unix socket at ``path``; runs until killed.

    Bodies are read into one scratch buffer and dropped; only the 8-byte
    request heads are looked at.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    # per connection: socket, body bytes still to come, reply owed once they came, partial head
    conns: dict[int, list[Any]] = {}
    zeros = memoryview(bytes(8 << 20))
    view = memoryview(bytearray(1 << 20))
    while True:
        for fd, _ in ep.poll():
            if fd == listener.fileno():
                sock, _ = listener.accept()  # blocking: epoll says when a recv has data
                conns[sock.fileno()] = [sock, 0, 0, b""]
                ep.register(sock.fileno(), select.EPOLLIN)
                continue
            state = conns[fd]
            sock, skip, owed, head = state
            n = sock.recv_into(view)
            if not n:
                ep.unregister(fd)
                del conns[fd]
                sock.close()
                continue
            pos = 0
            while pos < n:
                if skip:
                    step = min(skip, n - pos)
                    skip -= step
                    pos += step
                    if not skip:
                        sock.sendall(zeros[:owed])
                    continue
                take = min(REQUEST.size - len(head), n - pos)
                head += view[pos : pos + take]
                pos += take
                if len(head) == REQUEST.size:
                    skip, owed = REQUEST.unpack(head)
                    head = b""
                    if not skip:
                        if owed:
                            sock.sendall(zeros[:owed])
                        else:  # no body, no reply: a mark for bench/daemon_instructions.py
                            os.getppid()
            state[1:] = [skip, owed, head]


class FloorStore:
    """The bench's store interface, sending tmem-sized frames to the echo server."""

    def __init__(self, path: str, name: str, page: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.page = page
        self.buf = bytearray(8 << 20)
        self.view = memoryview(self.buf)

    def _call(self, body_len: int, reply: int, parts: list[Any]) -> memoryview:
        self.sock.sendmsg([REQUEST.pack(body_len, reply), *parts])
        got, view, recv = 0, self.view, self.sock.recv_into
        while got < reply:
            got += recv(view[got:reply])
        return view[:reply]

    def put(self, key: int, data: bytes) -> None:
        self._call(HEADER + HANDLE + len(data), HEADER + 1, [bytes(HEADER + HANDLE), data])

    def get(self, key: int) -> bytes:
        return bytes(self._call(HEADER + HANDLE, HEADER + self.page, [bytes(HEADER + HANDLE)]))

    def put_many(self, items: list[tuple[int, bytes]]) -> None:
        n = len(items)
        parts: list[Any] = [bytes(HEADER + BATCH_HEAD)]
        for _, data in items:
            parts.append(bytes(ITEM))
            parts.append(data)
        body = HEADER + BATCH_HEAD + n * (ITEM + self.page)
        self._call_many(body, HEADER + n + 4, parts)

    def get_many(self, keys: list[int]) -> list[bytes]:
        n = len(keys)
        reply = self._call(HEADER + BATCH_HEAD + n * ITEM, HEADER + n + 4 + n * self.page,
                           [bytes(HEADER + BATCH_HEAD + n * ITEM)])  # fmt: skip
        base = HEADER + n + 4
        return [bytes(reply[base + i * self.page : base + (i + 1) * self.page]) for i in range(n)]

    def _call_many(self, body_len: int, reply: int, parts: list[Any]) -> None:
        self.sock.sendall(REQUEST.pack(body_len, reply) + b"".join(parts))
        got, view = 0, self.view
        while got < reply:
            got += self.sock.recv_into(view[got:reply])

    def close(self) -> None:
        self.sock.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: floor.py SOCKET_PATH")
    try:
        serve(sys.argv[1])
    finally:
        if os.path.exists(sys.argv[1]):
            os.unlink(sys.argv[1])

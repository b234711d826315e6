"""Helpers for attacking a daemon in tests: raw sockets, its resident memory, a
well-behaved client's latency."""

from __future__ import annotations

import os
import socket
import time

import tmem
from tmem.wire import Decoder

PAGE = 4096


def resident(pid: int) -> int:
    """The process's resident memory in bytes (``VmRSS`` of ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def running(pid: int) -> bool:
    """Whether a thread of the process is running or waiting to run (not asleep)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as fh:
                state = fh.read().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        if state in ("R", "D"):
            return True
    return False


def settle(pid: int, seconds: float = 0.3, longest: float = 20.0) -> int:
    """The resident memory once it stopped moving (the daemon caught up): after
    ``seconds``, once every thread of it sleeps and its RSS stayed the same for 0.1 s,
    however late a loaded machine runs it (at most ``longest`` seconds more)."""
    time.sleep(seconds)
    last = resident(pid)
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = resident(pid)
        if now == last and not running(pid):
            return now
        last = now
    return last


def raw(address: str, timeout: float = 10.0) -> socket.socket:
    """A plain socket connected to a daemon's Unix or TCP address."""
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        target: object = address.removeprefix("unix:")
    else:
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        sock = socket.socket(socket.AF_INET)
        target = (host, int(port))
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(target)
            return sock
        except BlockingIOError:  # a full Unix listen backlog: the daemon is catching up
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def frames_until_closed(sock: socket.socket) -> list[tuple[int, int, bytes]]:
    """Every frame the daemon sends until it closes the connection."""
    decoder, frames = Decoder(), []
    try:
        while n := sock.recv_into(decoder.recv_buffer()):
            decoder.received(n)
            while (frame := decoder.next_frame()) is not None:
                frames.append((frame[0], frame[1], bytes(frame[3])))
    except ConnectionResetError:
        pass
    return frames


def is_closed(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the daemon closes ``sock`` (after any frames) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        frames_until_closed(sock)
    except TimeoutError:
        return False
    return True


def page(n: int, size: int = PAGE) -> bytes:
    return n.to_bytes(4, "little") * (size // 4)


def round_trips(client: tmem.RemoteClient, pool: int, count: int) -> list[float]:
    """Seconds of ``count`` put-then-get round trips of a well-behaved client,
    each checked for the right page."""
    times = []
    for i in range(count):
        data = page(i)
        started = time.perf_counter()
        assert client.put_page(pool, 1, i, data)
        assert client.get_page(pool, 1, i) == data
        times.append(time.perf_counter() - started)
    return times

"""``tmem serve`` loads pages from tiers off its event loop: a slow tier stalls only
the gets that need it, replies stay in request order, and the contract holds.

A real daemon, a real Redis Cluster (its own: its primaries are stopped with
SIGSTOP, and its replicas are told not to take over, so that a get waits in the
tier's retries until the primaries go on) and a real SSD log.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import tmem
from tests.daemon.conftest import serve_processes
from tests.rediscluster import LocalCluster
from tmem.wire import Decoder, Op
from tmem.wire import messages as msg
from tmem.wire.frames import HEADER

PAGE = 4096


def page(n: int) -> bytes:
    return random.Random(n).randbytes(PAGE // 2) + bytes(PAGE // 2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A cluster of its own whose replicas never take over a stopped primary."""
    made = LocalCluster()
    try:
        for port in made.ports:
            redis.Redis(port=port).config_set("cluster-replica-no-failover", "yes")
        yield made
    finally:
        made.stop()


@contextlib.contextmanager
def primaries_stopped(cluster: LocalCluster, longest: float = 20.0) -> Iterator[None]:
    """Every primary stopped (SIGSTOP) inside the block, and at most ``longest`` seconds."""
    procs = [cluster.procs[port] for port in cluster.primaries()]
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    valve = threading.Timer(longest, lambda: [p.send_signal(signal.SIGCONT) for p in procs])
    valve.start()
    try:
        yield
    finally:
        valve.cancel()
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
        cluster.wait_ready(len(procs), 1)


@pytest.fixture
def daemon(tmp_path) -> Iterator[Callable[..., tuple[Any, str]]]:
    """``tmem serve`` processes; each must stop cleanly (exit 0) at the end of the test."""
    with serve_processes(tmp_path, "f") as start:
        started: list[Any] = []

        def run(*args: str) -> tuple[Any, str]:
            proc, address = start(*args)
            started.append(proc)
            return proc, address

        yield run
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
            assert proc.wait(30) == 0


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def fill_and_demote(client: tmem.RemoteClient, pool: int, count: int, demoted: int) -> None:
    """Put pages ``(1, i)`` until the daemon's demoter has moved ``demoted`` to its tier.

    A put into full RAM is refused until the demoter has moved pages down, which a
    loaded machine runs late: puts are retried for up to ``wait_until``'s minute."""
    for i in range(count):
        assert wait_until(lambda i=i: client.put_page(pool, 1, i, page(i))), i
    assert wait_until(lambda: client.stats()["tier_pages"] >= demoted)


def in_flight(admin: tmem.RemoteAdmin) -> int:
    return int(admin.stats()["daemon"].get("fetches_in_flight", -1))


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; its result (or error) lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_get_waiting_for_a_stopped_primary_does_not_stall_other_clients(daemon, cluster):
    _, address = daemon("--capacity", "256K", "--tier", cluster.spec + "?fetch-timeout=30")
    slow, quick = tmem.connect(address, name="slow"), tmem.connect(address, name="quick")
    admin = tmem.admin(address)
    try:
        pool = slow.new_pool(persistent=True)
        fill_and_demote(slow, pool, 150, demoted=20)  # the oldest pages go first
        mine = quick.new_pool(persistent=True)
        assert wait_until(lambda: quick.put_page(mine, 7, 0, page(1000)))  # RAM frees up
        assert quick.stats()["tier_pages"] == 0  # the newest page stays in RAM
        with primaries_stopped(cluster):
            thread, got = in_background(lambda: slow.get_page(pool, 1, 0))
            # The daemon answers the administrator while the load waits...
            assert wait_until(lambda: in_flight(admin) == 1)
            # ...and another client's get of a page in RAM.
            assert quick.get_page(mine, 7, 0) == page(1000)
            assert thread.is_alive() and in_flight(admin) == 1
        thread.join(40)
        assert got == {"result": page(0)}  # once its primary goes on: the page, whole
        daemon_stats = admin.stats()["daemon"]
        assert daemon_stats["fetches"] >= 1 and daemon_stats["fetches_in_flight"] == 0
    finally:
        slow.close()
        quick.close()
        admin.close()


def test_a_put_and_a_flush_while_a_batch_waits_for_its_pages_win(daemon, cluster):
    _, address = daemon("--capacity", "256K", "--tier", cluster.spec + "?fetch-timeout=30")
    admin = tmem.admin(address)
    shared = uuid.uuid4()
    for name in ("reader", "writer"):
        admin.authorize_shared(name, shared)
    reader, writer = tmem.connect(address, name="reader"), tmem.connect(address, name="writer")
    try:
        pool = reader.new_pool(persistent=True, shared=True, uuid=shared)
        theirs = writer.new_pool(persistent=True, shared=True, uuid=shared)
        fill_and_demote(reader, pool, 150, demoted=20)
        with primaries_stopped(cluster):
            thread, got = in_background(lambda: reader.get_pages(pool, [(1, 0), (1, 1), (1, 2)]))
            assert wait_until(lambda: in_flight(admin) == 1)
            # While the batch's loads wait, the same handles change from another connection.
            assert wait_until(lambda: writer.put_page(theirs, 1, 0, page(5000)))
            writer.flush_page(theirs, 1, 1)
            assert thread.is_alive()
        thread.join(40)
        # What the tier held for (1, 0) and (1, 1) is stale now: never returned.
        assert got == {"result": [page(5000), None, page(2)]}
    finally:
        reader.close()
        writer.close()
        admin.close()


def test_a_client_that_leaves_or_a_daemon_that_stops_while_a_page_loads(daemon, cluster):
    proc, address = daemon("--capacity", "256K", "--tier", cluster.spec + "?fetch-timeout=30")
    admin = tmem.admin(address)
    leaving, staying = tmem.connect(address, name="leaving"), tmem.connect(address, name="staying")
    try:
        pool = leaving.new_pool(persistent=True)
        fill_and_demote(leaving, pool, 150, demoted=20)
        other = staying.new_pool(persistent=True)
        assert wait_until(lambda: staying.put_page(other, 9, 0, page(1)))
        with primaries_stopped(cluster):
            thread, _ = in_background(lambda: leaving.get_page(pool, 1, 0))
            assert wait_until(lambda: in_flight(admin) == 1)
            # The client goes mid-get: its connection closes while its page loads.
            leaving._chan.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
            thread.join(10)
            assert wait_until(lambda: admin.stats()["daemon"]["connections"] == 2)
            # Its client, and its private pages, wait for the load; no one reads the reply.
            assert "leaving" in admin.stats()["clients"] and in_flight(admin) == 1
            assert staying.get_page(other, 9, 0) == page(1)
        assert wait_until(lambda: "leaving" not in admin.stats()["clients"])
        assert in_flight(admin) == 0 and staying.get_page(other, 9, 0) == page(1)
        # Stopping while a load runs: the daemon waits for it, then exits cleanly.
        fill_and_demote(staying, other, 150, demoted=20)
        with primaries_stopped(cluster):
            thread, got = in_background(lambda: staying.get_page(other, 1, 0))
            assert wait_until(lambda: in_flight(admin) == 1)
            proc.terminate()
            time.sleep(0.5)
            assert proc.poll() is None  # it waits for the load under way
        assert proc.wait(30) == 0
        thread.join(10)
        assert isinstance(got.get("error"), tmem.ConnectionLost)
    finally:
        with contextlib.suppress(tmem.TmemError):
            leaving.close()
        with contextlib.suppress(tmem.TmemError):
            staying.close()
        with contextlib.suppress(tmem.TmemError):
            admin.close()


# --- raw frames: requests pipelined on one connection -------------------------------------


class Raw:
    """A connection speaking frames directly, to pipeline requests."""

    def __init__(self, address: str, name: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)  # 300 pipelined requests on a loaded machine
        self.sock.connect(address.removeprefix("unix:"))
        self.decoder = Decoder(8 << 20)
        self.sock.sendall(msg.encode_hello(name))
        assert self.frames(1)[0][0] == Op.HELLO

    def new_pool(self) -> int:
        self.sock.sendall(msg.encode_new_pool(True, False, None, PAGE))
        [(op, status, _tag, body)] = self.frames(1)
        assert op == Op.NEW_POOL and status == 0
        return int(msg.decode_pool(memoryview(body)))

    def put(self, pool: int, index: int, data: bytes) -> bool:
        """Put page ``(1, index)``; False where the host refused it (full until the demoter
        has moved pages down: on a loaded machine it may lag behind the puts)."""
        self.sock.sendall(msg.encode_put(pool, 1, index, data))
        [(op, status, _tag, body)] = self.frames(1)
        assert (op, status) == (Op.PUT, 0) and body in (b"\x01", b"\x00")
        return body == b"\x01"

    def frames(self, count: int) -> list[tuple[int, int, int, bytes]]:
        """The next ``count`` frames the daemon sends."""
        frames: list[tuple[int, int, int, bytes]] = []
        while len(frames) < count:
            frame = self.decoder.next_frame()
            if frame is None:
                n = self.sock.recv_into(self.decoder.recv_buffer())
                assert n, "the daemon closed the connection"
                self.decoder.received(n)
                continue
            op, status, tag, body = frame
            frames.append((op, status, tag, bytes(body)))
        return frames


def tagged(frame: bytes, tag: int) -> bytes:
    op, status, _, length = HEADER.unpack_from(frame)
    return HEADER.pack(op, status, tag, length) + frame[HEADER.size :]


def test_pipelined_gets_and_batches_with_pages_on_the_ssd_come_back_whole_and_in_order(
    daemon, tmp_path
):
    _, address = daemon("--capacity", "256K", "--tier", f"ssd:{tmp_path}:8M")
    admin, writer = tmem.admin(address), tmem.connect(address, name="w")
    raw = Raw(address, "piper")
    try:
        pool = raw.new_pool()
        for i in range(200):  # the oldest pages go down to the SSD
            assert wait_until(lambda i=i: raw.put(pool, i, page(i))), i
        assert wait_until(lambda: admin.stats()["tiers"][0]["host_pages"] >= 50)
        rng = random.Random(7)
        requests: list[bytes] = []
        expected: list[tuple[int, Any]] = []  # (op, what the reply carries)
        newer = {i: page(10_000 + i) for i in rng.sample(range(200), 20)}
        for _ in range(300):
            kind = rng.random()
            i = rng.randrange(200)
            if kind < 0.6:
                requests.append(msg.encode_handle_op(Op.GET, pool, 1, i))
                expected.append((Op.GET, i))
            elif kind < 0.7:  # a batch of gets, some below RAM
                handles = [(1, rng.randrange(200)) for _ in range(rng.choice((3, 70, 130)))]
                requests.append(msg.encode_get_pages(pool, handles))
                expected.append((Op.GET_PAGES, [h[1] for h in handles]))
            elif kind < 0.85 and i in newer:  # a put over the page, then its get
                requests.append(msg.encode_put(pool, 1, i, newer.pop(i)))
                expected.append((Op.PUT, i))
            else:
                requests.append(msg.encode_handle_op(Op.GET, pool, 1, i))
                expected.append((Op.GET, i))
        current: dict[int, bytes] = {i: page(i) for i in range(200)}  # b"": a miss
        raw.sock.sendall(b"".join(tagged(r, n) for n, r in enumerate(requests)))
        replies = raw.frames(len(requests))
        for n, ((op, what), (got_op, status, tag, body)) in enumerate(
            zip(expected, replies, strict=True)
        ):
            assert (got_op, status, tag) == (op, 0, n), n
            if op == Op.GET:
                assert body == current[what], n
            elif op == Op.PUT:  # a full host may refuse it: then the old page is gone too
                assert body in (b"\x01", b"\x00"), n
                current[what] = page(10_000 + what) if body == b"\x01" else b""
            else:
                codes, _, data = msg.decode_batch_reply(memoryview(body), len(what))
                hits = bytes(msg.ITEM_YES if current[i] else msg.ITEM_NO for i in what)
                assert codes == hits, n
                assert bytes(data) == b"".join(current[i] for i in what), n
        assert admin.stats()["daemon"]["fetches"] > 10  # gets met pages on the SSD
    finally:
        raw.sock.close()
        writer.close()
        admin.close()

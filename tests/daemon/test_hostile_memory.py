"""What a hostile peer can make a real ``tmem serve`` hold: bounded before and after
the hello, whatever it sends or leaves unread (resident memory from /proc)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time

import tmem
from tmem.wire import DEFAULT_MAX_BODY, HEADER, Op
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


def _send_some(sock: socket.socket, data: bytes) -> int:
    """Send what the socket takes of ``data`` now, without waiting."""
    sock.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < len(data):
            sent += sock.send(data[sent : sent + (256 << 10)])
    return sent


ATTACKER_TOKEN = "a" * 32
GOOD_TOKEN = "g" * 32


def _tcp_daemon(serve_process, tmp_path, *options: str) -> tuple[int, str, str]:
    """A ``tmem serve`` on Unix and TCP (two client tokens): its pid and both addresses."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"client {ATTACKER_TOKEN} bad\nclient {GOOD_TOKEN} good\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc, address = serve_process(
        "--tcp", f"127.0.0.1:{port}", "--token-file", str(tokens), *options
    )  # fmt: skip
    return proc.pid, address, f"tcp://127.0.0.1:{port}"


def test_all_connections_together_hold_at_most_the_transfer_budget(serve_process, tmp_path):
    budget = 32 * MiB
    pid, _, tcp = _tcp_daemon(
        serve_process, tmp_path, "--capacity", "16M", "--compress", "none",
        "--transfer-budget", str(budget),
    )  # fmt: skip
    good = tmem.connect(tcp, name="good", token=GOOD_TOKEN)
    pool = good.new_pool(persistent=True)
    assert good.put_page(pool, 1, 1, page(1))
    before = settle(pid)
    frame = DEFAULT_MAX_BODY
    uploads, readers = [], []
    for n in range(20):  # each sends all but the last byte of a frame as large as allowed
        sock = raw(tcp)
        sock.sendall(msg.encode_hello(f"up{n}", token=ATTACKER_TOKEN))
        _send_some(sock, HEADER.pack(Op.PUT_PAGES, 0, 0, frame) + bytes(frame - 1))
        uploads.append(sock)
    for n in range(20):  # each asks for a reply as large as allowed and reads none of it
        sock = raw(tcp)
        sock.sendall(msg.encode_hello(f"down{n}", token=ATTACKER_TOKEN))
        sock.sendall(msg.encode_new_pool(True, False, None, PAGE))
        sock.sendall(msg.encode_put(0, 1, 1, page(1)))
        count = frame // (PAGE + 1) - 1
        _send_some(sock, msg.encode_get_pages(0, [(1, 1)] * count) * 2)
        readers.append(sock)
    grown = settle(pid, 1.0) - before
    # 40 connections of up to 8 MiB each without the budget; with it, the budget
    # and each connection's small buffers (32 KiB in, up to 100 KiB out)
    bound = budget + 40 * (160 << 10) + 8 * MiB
    assert grown < bound, f"40 large transfers grew the daemon by {grown / MiB:.1f} MiB"
    # a well-behaved client's small requests need no grant: it is served meanwhile
    assert good.put_page(pool, 1, 2, page(2)) and good.get_page(pool, 1, 2) == page(2)
    for sock in uploads + readers:
        sock.close()
    # the grants go round: a batch waits only until the attackers are gone
    assert good.get_pages(pool, [(1, 1), (1, 2)]) == [page(1), page(2)]


def test_the_administrator_never_waits_for_the_transfer_budget(serve_process, tmp_path):
    _, address, tcp = _tcp_daemon(
        serve_process, tmp_path, "--capacity", "16M", "--transfer-budget", "13M"
    )  # one grant in all
    client = tmem.connect(address, name="vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 1, page(1))
    hog = raw(tcp)  # takes the only grant, and holds it sending the rest of its frame
    hog.sendall(msg.encode_hello("hog", token=ATTACKER_TOKEN))
    _send_some(hog, HEADER.pack(Op.PUT_PAGES, 0, 0, DEFAULT_MAX_BODY) + bytes(1 << 20))
    time.sleep(0.3)
    admin = tmem.admin(address, timeout=5)
    assert admin.stats()["pages"] == 1  # a reply that needs a grant, answered at once
    hog.close()


def test_connections_that_close_after_large_replies_leave_nothing_behind(serve_process, tmp_path):
    # Peers each ask for a maximum-size GET_PAGES reply (4 MiB) and hang up: half once
    # they have read it, half as soon as it starts to arrive.  Their buffers must go
    # with them, not linger until the garbage collector's next full pass.
    pid, _, tcp = _tcp_daemon(serve_process, tmp_path, "--capacity", "16M", "--compress", "none")
    count = DEFAULT_MAX_BODY // (PAGE + 1) - 1
    request = msg.encode_new_pool(True, False, None, PAGE) + msg.encode_put(0, 1, 1, page(1))
    request += msg.encode_get_pages(0, [(1, 1)] * count)
    before = settle(pid)
    for n in range(24):
        sock = raw(tcp)
        sock.sendall(msg.encode_hello(f"gone{n}", token=ATTACKER_TOKEN) + request)
        if n % 2:
            select.select([sock], [], [], 10)  # the reply has started: hang up unread
        else:
            sock.shutdown(socket.SHUT_WR)
            reply = frames_until_closed(sock)[-1]
            assert reply[:2] == (Op.GET_PAGES, 0) and reply[2].endswith(page(1))
        sock.close()
    grown = settle(pid, 0.5) - before
    # 24 connections with a 4 MiB reply each: what may stay is the allocator's slack
    assert grown < 16 * MiB, f"24 closed connections left {grown / MiB:.1f} MiB behind"
    good = tmem.connect(tcp, name="good", token=GOOD_TOKEN)
    pool = good.new_pool(persistent=True)
    assert good.put_page(pool, 1, 1, page(1)) and good.get_pages(pool, [(1, 1)]) == [page(1)]


def test_a_connection_that_hangs_up_while_waiting_for_a_grant_is_dropped_at_once(
    serve_process, tmp_path
):
    pid, address, tcp = _tcp_daemon(
        serve_process, tmp_path, "--capacity", "16M", "--transfer-budget", "13M"
    )  # one grant in all
    hog = raw(tcp)  # takes the only grant, and keeps it by reading no reply
    hog.sendall(
        msg.encode_hello("hog", token=ATTACKER_TOKEN) + msg.encode_new_pool(True, False, None, PAGE)
    )
    hog.sendall(msg.encode_put(0, 1, 1, page(1)))
    count = DEFAULT_MAX_BODY // (PAGE + 1) - 1
    _send_some(hog, msg.encode_get_pages(0, [(1, 1)] * count) * 3)
    admin = tmem.admin(address, timeout=10)
    time.sleep(0.3)
    open_before = admin.stats()["daemon"]["connections"]
    waiters = []
    for n in range(4):  # each has more of a frame than its small buffer holds: it waits
        sock = raw(tcp)
        sock.sendall(msg.encode_hello(f"w{n}", token=ATTACKER_TOKEN))
        _send_some(sock, HEADER.pack(Op.PUT_PAGES, 0, 0, DEFAULT_MAX_BODY) + bytes(256 << 10))
        waiters.append(sock)
    assert _connections_become(admin, open_before + 4)
    settle(pid)  # the daemon took in what they sent
    cpu = _cpu_seconds(pid)
    for sock in waiters:
        sock.close()
    # gone at once, not kept (and polled in a loop) until the grant comes free
    assert _connections_become(admin, open_before)
    time.sleep(1.0)
    assert _cpu_seconds(pid) - cpu < 0.5, "the daemon spun on connections that were gone"
    hog.close()


def _connections_become(admin: tmem.RemoteAdmin, count: int, timeout: float = 30.0) -> bool:
    """Wait until the daemon counts ``count`` open connections (a loaded machine runs
    it late); False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while admin.stats()["daemon"]["connections"] != count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

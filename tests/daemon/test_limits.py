"""Connection slots: limits in all and per peer, slots kept for the administrator,
idle and hello timeouts, running out of descriptors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import tmem

from .hostile import is_closed, page, raw

CLIENT_TOKEN = "c" * 32
OTHER_TOKEN = "o" * 32
ADMIN_TOKEN = "a" * 32


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"client {CLIENT_TOKEN} tenant\nclient {OTHER_TOKEN}\nadmin {ADMIN_TOKEN}\n")
    return str(path)


def test_connections_beyond_max_connections_are_refused(start_daemon):
    server = start_daemon(capacity=1 << 20, max_connections=8)
    held = [raw(server.address) for _ in range(8)]
    extra = raw(server.address)
    assert is_closed(extra, 10)  # refused at once: no hello needed to find out
    assert len(server.conns) == 8
    held.pop().close()
    time.sleep(0.2)
    tmem.connect(server.address, name="late").close()  # a slot was freed


def test_peers_without_a_token_cannot_lock_the_administrator_out(start_daemon, token_file):
    server = start_daemon(
        capacity=1 << 20, max_connections=8, tcp="127.0.0.1:0", token_file=token_file
    )
    tcp = "tcp://{}:{}".format(*server.tcp_address)
    held = [raw(tcp) for _ in range(8)]  # no hello: they hold slots until hello-timeout
    time.sleep(0.2)
    assert len(server.conns) == 6  # the last two slots are kept for the administrator
    admin = tmem.admin(server.address)
    admin.set_capacity(2 << 20)
    assert admin.stats()["capacity"] == 2 << 20
    for sock in held:
        sock.close()


def test_one_unix_user_may_hold_only_its_share_of_connections(start_daemon):
    server = start_daemon(
        capacity=1 << 20, admin_uids=[os.getuid() + 1], max_connections_per_peer=3
    )
    clients = [tmem.connect(server.address, name=f"vm{i}") for i in range(3)]
    with pytest.raises((tmem.LimitExceeded, tmem.ConnectionLost)):
        tmem.connect(server.address, name="vm3")
    assert len(server.conns) == 3
    clients.pop().close()
    tmem.connect(server.address, name="vm3").close()


def test_one_token_may_hold_only_its_share_of_connections(start_daemon, token_file):
    server = start_daemon(
        capacity=1 << 20, tcp="127.0.0.1:0", token_file=token_file, max_connections_per_peer=3
    )
    tcp = "tcp://{}:{}".format(*server.tcp_address)
    clients = [tmem.connect(tcp, name=f"vm{i}", token=CLIENT_TOKEN) for i in range(3)]
    with pytest.raises(tmem.LimitExceeded):
        tmem.connect(tcp, name="vm3", token=CLIENT_TOKEN)
    other = tmem.connect(tcp, name="vm3", token=OTHER_TOKEN)  # another token has its own
    assert other.new_pool() == 0
    clients.pop().close()
    tmem.connect(tcp, name="vm3", token=CLIENT_TOKEN).close()


def test_idle_connections_close_unless_they_hold_persistent_pages(start_daemon):
    server = start_daemon(capacity=1 << 20, idle_timeout=0.5)
    idle = tmem.connect(server.address, name="idle")
    cache = tmem.connect(server.address, name="cache")  # ephemeral pages only: may be dropped
    assert cache.put_page(cache.new_pool(), 1, 1, page(1))
    keeper = tmem.connect(server.address, name="keeper")
    pool = keeper.new_pool(persistent=True)
    assert keeper.put_page(pool, 1, 1, page(1))
    stuck = raw(server.address)
    stuck.sendall(tmem.wire.messages.encode_hello("stuck") + b"\x04\x00")  # half a header
    time.sleep(2.0)
    for gone in (idle, cache):
        with pytest.raises(tmem.ConnectionLost):
            gone.new_pool()
    assert is_closed(stuck, 5)
    assert keeper.get_page(pool, 1, 1) == page(1)  # persistent pages keep their connection


EMFILE_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, resource, socket, sys, threading, time
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    lines = []
    class Count(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
    logging.getLogger("tmem").addHandler(Count())
    logging.getLogger("tmem").setLevel(logging.INFO)
    accepts = [0]
    real_accept = socket.socket.accept
    def counting_accept(self):
        accepts[0] += 1
        return real_accept(self)
    socket.socket.accept = counting_accept
    import tmem
    from tmem.daemon.config import Config
    from tmem.daemon.server import Server, run_in_thread
    server = Server(Config().with_values({{"socket": sys.argv[1], "capacity": 1 << 20}}))
    thread = run_in_thread(server)
    admin = tmem.admin(server.address)
    filler = []
    try:
        while True:
            filler.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    os.close(filler.pop())  # one left for the client's own socket
    before = accepts[0]
    client = socket.socket(socket.AF_UNIX)
    client.connect(sys.argv[1])  # waits in the backlog: the daemon has no descriptor for it
    time.sleep(2.0)
    tries = accepts[0] - before
    for fd in filler:
        os.close(fd)
    late = tmem.connect(server.address, name="late", timeout=10)
    print(json.dumps(dict(max_connections=server.max_connections, tries=tries,
                          lines=lines, pool=late.new_pool())))
    server.stop()
    """
)


def test_running_out_of_descriptors_neither_spins_nor_floods_the_log(tmp_path):
    code = EMFILE_SCRIPT.format()
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "e.sock")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures["max_connections"] == 64 - 32  # lowered to fit the limit, and said so
    assert any("lowered" in line for line in figures["lines"])
    accept_lines = [line for line in figures["lines"] if "accept failed" in line]
    assert 1 <= len(accept_lines) <= 3, accept_lines
    assert figures["tries"] <= 12  # backing off 0.05 s to 1 s; a spinning loop tries thousands
    assert figures["pool"] == 0  # and the daemon accepts again once descriptors are free


def test_the_limits_are_options_of_tmem_serve_and_pools_are_limited(serve_process):
    _, address = serve_process(
        "--capacity", "1M", "--max-connections", "8", "--max-connections-per-peer", "2",
        "--idle-timeout", "0", "--max-pools", "3",
    )  # fmt: skip
    client = tmem.connect(address, name="vm1")
    assert [client.new_pool() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(tmem.LimitExceeded):
        client.new_pool()
    client.destroy_pool(1)
    assert client.new_pool() == 3  # a pool given back makes room for another
    assert len(client.stats()["pools"]) == 3  # and STATS stays as small as the limit
    assert client.put_page(0, 1, 1, page(1))

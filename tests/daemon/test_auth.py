"""Who may do what: peer credentials on the Unix socket, tokens over TCP, admin-only calls."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

import tmem
from tmem.daemon.auth import Authenticator, Grant, read_token_file
from tmem.daemon.config import Config
from tmem.errors import InvalidArgument, PermissionDenied
from tmem.remote import Channel
from tmem.wire import ROLE_CLIENT, Op
from tmem.wire import messages as msg

CLIENT_TOKEN = "c" * 32
ADMIN_TOKEN = "a" * 32
ADMIN_CALLS = [
    (Op.SET_CAPACITY, {"capacity": 0}),
    (Op.SET_CLIENT, {"name": "vm1", "weight": 5}),
    (Op.AUTHORIZE_SHARED, {"client": "vm1", "uuid": str(uuid.uuid4())}),
    (Op.REVOKE_SHARED, {"client": "vm1", "uuid": str(uuid.uuid4())}),
    (Op.HOST_STATS, {}),
]


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# who may connect\nclient {CLIENT_TOKEN}\nadmin {ADMIN_TOKEN}\n")
    return str(path)


@pytest.fixture
def tcp_daemon(start_daemon, token_file):
    server = start_daemon(capacity=1 << 20, tcp="127.0.0.1:0", token_file=token_file)
    host, port = server.tcp_address
    return server, f"tcp://{host}:{port}"


def test_tcp_clients_need_a_valid_token(tcp_daemon):
    _, address = tcp_daemon
    for token in (None, "", "x" * 32, CLIENT_TOKEN[:-1]):
        with pytest.raises(PermissionDenied):
            tmem.connect(address, name="vm1", token=token)
    client = tmem.connect(address, name="vm1", token=CLIENT_TOKEN)
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 1, b"p" * 4096) and client.get_page(pool, 1, 1) == b"p" * 4096


def test_only_an_admin_token_administers_over_tcp(tcp_daemon):
    _, address = tcp_daemon
    with pytest.raises(PermissionDenied):
        tmem.admin(address, token=CLIENT_TOKEN)
    with pytest.raises(PermissionDenied):
        tmem.admin(address)
    admin = tmem.admin(address, token=ADMIN_TOKEN)
    admin.set_capacity(2 << 20)
    assert admin.stats()["capacity"] == 2 << 20


@pytest.mark.parametrize("op, args", ADMIN_CALLS)
def test_admin_calls_on_a_client_connection_are_refused_to_non_admins(tcp_daemon, op, args):
    server, address = tcp_daemon
    vm1 = tmem.connect(address, name="vm1", token=CLIENT_TOKEN)
    chan = Channel(address, "intruder", ROLE_CLIENT, CLIENT_TOKEN, 5)
    with pytest.raises(PermissionDenied):
        chan.call(msg.encode_json_op(op, args), op)
    stats = server.host.stats()
    assert stats["capacity"] == 1 << 20 and stats["clients"][vm1.name]["weight"] == 1
    assert vm1.new_pool() == 0  # the daemon still serves


def test_unix_peers_other_than_the_admin_users_cannot_administer(start_daemon):
    server = start_daemon(capacity=1 << 20, admin_uids=[os.getuid() + 1])
    with pytest.raises(PermissionDenied):
        tmem.admin(server.address)
    client = tmem.connect(server.address, name="vm1")
    assert client.name == f"{os.getuid()}:vm1"  # cannot pose as another user's client
    chan = Channel(server.address, "vm2", ROLE_CLIENT, None, 5)
    for op, args in ADMIN_CALLS:
        with pytest.raises(PermissionDenied):
            chan.call(msg.encode_json_op(op, args), op)
    assert set(server.host.stats()["clients"]) == {f"{os.getuid()}:vm1", f"{os.getuid()}:vm2"}


def test_the_daemons_own_user_administers_over_the_unix_socket(daemon):
    admin = tmem.admin(daemon.address)
    client = tmem.connect(daemon.address, name="vm1")
    assert client.name == "vm1"
    shared = uuid.uuid4()
    admin.authorize_shared("vm1", shared)
    assert client.new_pool(persistent=True, shared=True, uuid=shared) >= 0


@pytest.mark.skipif(os.getuid() != 0, reason="switching users needs root")
@pytest.mark.parametrize("mode, reachable", [(0o600, False), (0o666, True)])
def test_another_user_is_known_by_its_peer_credentials(start_daemon, mode, reachable):
    public = tempfile.mkdtemp(prefix="tmem-auth-")  # pytest's own tmp dirs are private
    os.chmod(public, 0o755)
    try:
        verdict = _as_nobody(start_daemon(socket=os.path.join(public, "s"), socket_mode=mode))
    finally:
        shutil.rmtree(public)
    assert verdict == ("65534:vm1 no-admin" if reachable else "unreachable")


def _as_nobody(server) -> str:
    """What user 65534 gets from the daemon: its client's name and admin verdict."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes "nobody" and reports what it may do
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            verdict = []
            try:
                client = tmem.connect(server.address, name="vm1", timeout=5)
                verdict.append(client.name)
                try:
                    tmem.admin(server.address, timeout=5)
                    verdict.append("admin")
                except PermissionDenied:
                    verdict.append("no-admin")
            except tmem.ConnectionLost:
                verdict.append("unreachable")
            os.write(write, " ".join(verdict).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    verdict = os.read(read, 1000).decode()
    os.close(read)
    assert status == 0
    return verdict


def test_token_files_name_roles_and_refuse_weak_tokens(tmp_path):
    good = tmp_path / "good"
    good.write_text(f"{CLIENT_TOKEN}\n\nadmin {ADMIN_TOKEN}  # ops\n")
    grants = read_token_file(str(good))
    assert {token: grant.role for token, grant in grants.items()} == {
        CLIENT_TOKEN: "client",
        ADMIN_TOKEN: "admin",
    }
    for text in ("admin short\n", f"root {ADMIN_TOKEN}\n", "# nothing\n", f"a b {ADMIN_TOKEN}"):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(InvalidArgument):
            read_token_file(str(bad))
    with pytest.raises(InvalidArgument):
        read_token_file(str(tmp_path / "missing"))


def test_tokens_grant_their_role_and_nothing_else():
    grants = {CLIENT_TOKEN: Grant("client", "c"), ADMIN_TOKEN: Grant("admin", "a")}
    auth = Authenticator(frozenset({0}), grants)
    assert auth.tcp_peer(ADMIN_TOKEN).admin and not auth.tcp_peer(CLIENT_TOKEN).admin
    with pytest.raises(PermissionDenied):
        auth.tcp_peer(ADMIN_TOKEN + "x")


def test_tcp_without_a_token_file_is_refused_by_the_configuration():
    with pytest.raises(InvalidArgument, match="token"):
        Config().with_values({"tcp": "127.0.0.1:7000"})

"""Identities cannot be borrowed: a TCP token grants a namespace of client names,
as the uid does on the Unix socket, and tokens are compared in constant time."""

from __future__ import annotations

import hmac
import uuid

import pytest

import tmem
from tmem.daemon import auth
from tmem.errors import InvalidArgument

from .hostile import page

TENANT_TOKEN = "t" * 32
OTHER_TOKEN = "o" * 32
ADMIN_TOKEN = "a" * 32


@pytest.fixture
def tcp(start_daemon, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"client {TENANT_TOKEN} tenant\nclient {OTHER_TOKEN}\nadmin {ADMIN_TOKEN}\n")
    server = start_daemon(capacity=1 << 20, tcp="127.0.0.1:0", token_file=str(tokens))
    return server, "tcp://{}:{}".format(*server.tcp_address)


def test_a_client_token_registers_names_only_in_its_namespace(tcp):
    server, address = tcp
    assert tmem.connect(address, name="vm9", token=TENANT_TOKEN).name == "tenant:vm9"
    posing = tmem.connect(address, name="1001:vm9", token=TENANT_TOKEN)
    assert posing.name == "tenant:1001:vm9"  # not the Unix user 1001's client
    other = tmem.connect(address, name="vm9", token=OTHER_TOKEN)
    assert other.name.startswith("t-") and other.name.endswith(":vm9")
    assert tmem.connect(address, name="vm9", token=ADMIN_TOKEN).name == "vm9"


def test_a_token_holder_cannot_take_over_another_clients_shared_pages(tcp):
    server, address = tcp
    shared = uuid.uuid4()
    admin = tmem.admin(server.address)
    admin.authorize_shared("vm1", shared)
    owner = tmem.connect(server.address, name="vm1")
    pool = owner.new_pool(persistent=True, shared=True, uuid=shared)
    assert owner.put_page(pool, 1, 1, page(1))
    thief = tmem.connect(address, name="vm1", token=TENANT_TOKEN)
    with pytest.raises(tmem.PermissionDenied):
        thief.new_pool(persistent=True, shared=True, uuid=shared)
    assert owner.get_page(pool, 1, 1) == page(1)
    admin.authorize_shared("tenant:vm1", shared)  # rights are granted to the namespaced name
    joined = thief.new_pool(persistent=True, shared=True, uuid=shared)
    assert thief.get_page(joined, 1, 1) == page(1)


def test_token_file_namespaces_must_be_plain_distinct_words(tmp_path):
    for text in (
        f"client {TENANT_TOKEN} a:b\n",
        f"client {TENANT_TOKEN} 1001\n",
        f"client {TENANT_TOKEN} same\nclient {OTHER_TOKEN} same\n",
        f"client {'x' * 2000}\n",
    ):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(InvalidArgument):
            auth.read_token_file(str(bad))


def test_tokens_are_compared_in_constant_time_against_every_known_token(monkeypatch):
    grants = {TENANT_TOKEN: auth.Grant("client", "tenant"), ADMIN_TOKEN: auth.Grant("admin", "a")}
    authenticator = auth.Authenticator(frozenset(), grants)
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert authenticator.tcp_peer(TENANT_TOKEN).namespace == "tenant"
    with pytest.raises(tmem.PermissionDenied):
        authenticator.tcp_peer("z" * 32)
    # every attempt is compared with every token, by compare_digest, whatever matched
    assert len(compared) == 4
    assert {b for _, b in compared} == {TENANT_TOKEN.encode(), ADMIN_TOKEN.encode()}

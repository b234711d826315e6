"""Bad input to the remote client's entry points: every one answers with a TmemError.

``tmem.remote`` is compiled (setup.py) and takes ``Any`` at its boundary, checking
each argument itself, so that the compiled build refuses bad input with the same
errors as pure Python (CI runs this module both ways) rather than with a
TypeError from a compiled signature; and the connection stays usable after it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import tmem
from tmem import remote
from tmem.wire import Op
from tmem.wire import messages as msg

PAGE = 4096


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()


@pytest.fixture
def client(daemon):
    with tmem.connect(daemon.address, name="args") as client:
        yield client


def test_the_constants_the_compiled_client_inlines_are_the_wire_protocols():
    assert (remote._PUT, remote._GET, remote._HELLO) == (Op.PUT, Op.GET, Op.HELLO)
    assert msg.HANDLE.size == remote._HANDLE_SIZE
    assert remote._U32 == 1 << 32


@pytest.mark.parametrize("name", [5, None, b"vm", ["vm"]])
def test_a_client_name_that_is_not_a_string_is_invalid(daemon, name):
    with pytest.raises(tmem.InvalidArgument):
        tmem.connect(daemon.address, name=name)


@pytest.mark.parametrize("token", [5, b"secret", ["secret"]])
def test_a_token_that_is_not_a_string_is_invalid(daemon, token):
    with pytest.raises(tmem.InvalidArgument):
        tmem.connect(daemon.address, name="vm", token=token)
    with pytest.raises(tmem.InvalidArgument):
        tmem.admin(daemon.address, token=token)


@pytest.mark.parametrize("address", [5, "http://x", "tcp://nohost"])
def test_an_address_of_no_known_form_is_invalid(address):
    with pytest.raises(tmem.InvalidArgument):
        tmem.connect(address, name="vm")


@pytest.mark.parametrize("pool", ["0", None, -1, 1 << 32, 1.0, [0]])
def test_a_pool_id_that_is_no_pool_id_is_no_such_pool(client, pool):
    calls: list[Any] = [
        lambda: client.put_page(pool, 1, 0, bytes(PAGE)),
        lambda: client.get_page(pool, 1, 0),
        lambda: client.flush_page(pool, 1, 0),
        lambda: client.flush_object(pool, 1),
        lambda: client.destroy_pool(pool),
    ]
    for call in calls:
        with pytest.raises(tmem.NoSuchPool):
            call()
    for batch in (
        lambda: client.put_pages(pool, [(1, 0, bytes(PAGE))]),
        lambda: client.get_pages(pool, [(1, 0)]),
    ):
        with pytest.raises(tmem.NoSuchPool):
            batch()
    assert client.new_pool() >= 0  # the connection still serves


@pytest.mark.parametrize("oid, index", [("1", 0), (1.5, 0), (-1, 0), (2**192, 0), (0, None)])
def test_a_bad_handle_is_invalid_and_the_connection_serves_on(client, oid, index):
    pool = client.new_pool()
    for call in (
        lambda: client.put_page(pool, oid, index, bytes(PAGE)),
        lambda: client.get_page(pool, oid, index),
        lambda: client.flush_page(pool, oid, index),
    ):
        with pytest.raises(tmem.InvalidArgument):
            call()
    assert client.put_page(pool, 1, 0, bytes(PAGE))
    assert client.get_page(pool, 1, 0) == bytes(PAGE)


@pytest.mark.parametrize("data", ["text", 5, None, bytes(65537)])
def test_page_data_that_is_no_page_is_invalid(client, data):
    pool = client.new_pool()
    with pytest.raises(tmem.InvalidArgument):
        client.put_page(pool, 1, 0, data)
    assert isinstance(
        client.put_pages(pool, [(1, 0, data)], errors="return")[0], tmem.InvalidArgument
    )


def test_bad_batch_items_and_modes_answer_in_place(client):
    pool = client.new_pool()
    got = client.put_pages(pool, [(1, 0, bytes(PAGE)), "junk", (1, 2)], errors="return")
    assert got[0] is True
    assert all(isinstance(r, tmem.InvalidArgument) for r in got[1:])
    with pytest.raises(tmem.InvalidArgument):
        client.get_pages(pool, [(1, 0)], errors="maybe")


@pytest.mark.parametrize(
    "settings",
    [{"page_size": "4K"}, {"page_size": 1000}, {"uuid": "not-a-uuid"}],
)
def test_bad_pool_settings_are_invalid(client, settings):
    with pytest.raises(tmem.InvalidArgument):
        client.new_pool(**settings)


def test_bad_administrative_arguments_are_invalid(daemon):
    with tmem.admin(daemon.address) as admin:
        for call in (
            lambda: admin.set_capacity("lots"),
            lambda: admin.set_client(5, weight=1),
            lambda: admin.authorize_shared("vm", "not-a-uuid"),
            lambda: admin.revoke_shared("vm", 5),
        ):
            with pytest.raises(tmem.InvalidArgument):
                call()
        admin.authorize_shared("vm", uuid.uuid4())  # the connection still serves

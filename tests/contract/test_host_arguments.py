"""Bad input to the embedded host's entry points: every one answers with a TmemError.

The host is compiled (setup.py) and takes ``Any`` at its boundary, checking
each argument itself or through the engine, so that the compiled build
refuses bad input with the same errors as pure Python (CI runs this module
both ways) rather than with a TypeError from a compiled signature.
"""

from __future__ import annotations

import uuid

import pytest

import tmem

PAGE = 4096


@pytest.fixture
def host():
    return tmem.Host(capacity=16 << 20)


@pytest.mark.parametrize("capacity", ["lots", -1, 1.5, None])
def test_a_host_of_a_bad_capacity_is_refused(capacity):
    with pytest.raises(tmem.InvalidArgument):
        tmem.Host(capacity=capacity)


@pytest.mark.parametrize(
    "options",
    [{"policy": 5}, {"policy": ["share"]}, {"policy": "best"}, {"reserve": "half"},
     {"reserve": 2}, {"order": 3}, {"order": "fifo"}, {"compress": 5}, {"dedup": 1},
     {"compress": ["lz4"]}, {"dedup": ["host"]}],
)
def test_a_host_of_bad_options_is_refused(options):
    with pytest.raises(tmem.InvalidArgument):
        tmem.Host(capacity=1 << 20, **options)


@pytest.mark.parametrize("name", [5, None, b"vm1", "", ["vm1"], "x" * 256])
def test_a_client_name_that_is_not_a_string_is_refused_everywhere(host, name):
    for call in (
        lambda: host.connect(name),
        lambda: host.set_client(name, weight=2),
        lambda: host.authorize_shared(name, uuid.uuid4()),
        lambda: host.revoke_shared(name, uuid.uuid4()),
        lambda: host.forget_client(name),
        lambda: host.export_begin(name),
        lambda: host.export_round(name),
        lambda: host.export_pages(name),
        lambda: host.export_end(name),
        lambda: host.import_end(name, commit=False),
        lambda: host.drop_parked(name),
    ):
        with pytest.raises(tmem.InvalidArgument):
            call()


@pytest.mark.parametrize(
    "settings", [{"weight": "2"}, {"weight": 0}, {"cap": "lots"}, {"compress": 5}]
)
def test_bad_settings_at_connect_are_refused_and_leave_no_client(host, settings):
    with pytest.raises(tmem.InvalidArgument):
        host.connect("vm1", **settings)
    assert host.connect("vm1").stats()["puts"] == 0  # the name is free again


@pytest.mark.parametrize("errors", ["maybe", 3, None])
def test_a_batch_with_a_bad_errors_mode_is_refused(host, errors):
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    with pytest.raises(tmem.InvalidArgument):
        client.put_pages(pool, [(1, 1, bytes(PAGE))], errors=errors)
    with pytest.raises(tmem.InvalidArgument):
        client.get_pages(pool, [(1, 1)], errors=errors)


@pytest.mark.parametrize("pool", [[0], {}, "0", 1.0, None])
def test_a_pool_id_that_is_no_pool_id_is_no_such_pool(host, pool):
    client = host.connect("vm1")
    client.new_pool(persistent=True)  # pool 0 exists
    for call in (
        lambda: client.put_page(pool, 1, 1, bytes(PAGE)),
        lambda: client.get_page(pool, 1, 1),
        lambda: client.flush_page(pool, 1, 1),
        lambda: client.flush_object(pool, 1),
        lambda: client.destroy_pool(pool),
        lambda: client.page_size(pool),
    ):
        with pytest.raises(tmem.NoSuchPool):
            call()
    for batch in (
        lambda: client.put_pages(pool, [(1, 1, bytes(PAGE))] * 2, errors="return"),
        lambda: client.get_pages(pool, [(1, 1)] * 2, errors="return"),
    ):
        assert [type(r) for r in batch()] == [tmem.NoSuchPool] * 2

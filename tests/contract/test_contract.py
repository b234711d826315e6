"""The client contract (DESIGN.md section 1), run against every kind of host."""

from __future__ import annotations

import random
import uuid

import pytest

import tmem
from tests.charges import COST, PAGE, room_for
from tmem.engine import POOL_METADATA_BYTES


def page(n: int, size: int = PAGE) -> bytes:
    """A page that is unique to ``n`` and compresses to about half its size."""
    half = size // 2
    return random.Random(n).randbytes(half) + bytes(size - half)


@pytest.fixture
def host(make_host):
    return make_host(64 << 20)


@pytest.fixture
def client(host):
    return host.connect("vm1")


# --- handles and arguments ---------------------------------------------------


@pytest.mark.parametrize(
    "oid, index",
    [(-1, 0), (2**192, 0), (0, -1), (0, 2**32), (1.0, 0), ("1", 0), (0, None), (True, 0)],
)
def test_handles_out_of_range_raise_value_error(client, oid, index):
    pool = client.new_pool()
    for call in (
        lambda: client.put_page(pool, oid, index, page(1)),
        lambda: client.get_page(pool, oid, index),
        lambda: client.flush_page(pool, oid, index),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, tmem.InvalidArgument)


def test_handle_extremes_are_valid(client):
    pool = client.new_pool(persistent=True)
    for oid, index in [(0, 0), (2**192 - 1, 2**32 - 1), (2**64 + 5, 7)]:
        assert client.put_page(pool, oid, index, page(oid % 97))
        assert client.get_page(pool, oid, index) == page(oid % 97)


@pytest.mark.parametrize("size", [0, 256, 511, 1000, 4095, 131072, 2**20])
def test_page_size_must_be_power_of_two_in_range(client, size):
    with pytest.raises(tmem.InvalidArgument):
        client.new_pool(page_size=size)


@pytest.mark.parametrize("size", [512, 1024, 8192, 65536])
def test_every_allowed_page_size_round_trips(client, size):
    pool = client.new_pool(persistent=True, page_size=size)
    assert client.put_page(pool, 1, 0, page(size, size))
    assert client.get_page(pool, 1, 0) == page(size, size)


@pytest.mark.parametrize("length", [0, PAGE - 1, PAGE + 1, 2 * PAGE])
def test_put_of_wrong_length_raises(client, length):
    pool = client.new_pool()
    with pytest.raises(tmem.InvalidArgument):
        client.put_page(pool, 1, 0, b"x" * length)


def test_put_of_non_bytes_raises(client):
    pool = client.new_pool()
    with pytest.raises(tmem.InvalidArgument):
        client.put_page(pool, 1, 0, "x" * PAGE)


# --- pools -------------------------------------------------------------------


def test_unknown_pool_raises_no_such_pool(client):
    for call in (
        lambda: client.put_page(17, 1, 0, page(1)),
        lambda: client.get_page(17, 1, 0),
        lambda: client.flush_page(17, 1, 0),
        lambda: client.flush_object(17, 1),
        lambda: client.destroy_pool(17),
    ):
        with pytest.raises(tmem.NoSuchPool):
            call()


def test_destroyed_pool_loses_pages_and_id(client):
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, page(1))
    client.destroy_pool(pool)
    with pytest.raises(tmem.NoSuchPool):
        client.get_page(pool, 1, 0)
    with pytest.raises(tmem.NoSuchPool):
        client.destroy_pool(pool)
    assert client.stats()["pages"] == 0


def test_pool_ids_belong_to_their_client(host):
    a, b = host.connect("a"), host.connect("b")
    pool = a.new_pool(persistent=True)
    assert a.put_page(pool, 1, 0, page(1))
    with pytest.raises(tmem.NoSuchPool):
        b.get_page(pool, 1, 0)
    own = b.new_pool(persistent=True)
    assert b.get_page(own, 1, 0) is None


def test_private_pages_are_invisible_to_other_clients(host):
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(persistent=True), b.new_pool(persistent=True)
    assert pa == pb  # same number, different pools
    assert a.put_page(pa, 5, 5, page(5))
    assert b.get_page(pb, 5, 5) is None
    b.flush_object(pb, 5)
    assert a.get_page(pa, 5, 5) == page(5)


def test_a_closed_client_raises_connection_lost_on_every_call(host):
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, page(1))
    client.close()
    for call in (
        lambda: client.new_pool(),
        lambda: client.put_page(pool, 1, 1, page(2)),
        lambda: client.get_page(pool, 1, 0),
        lambda: client.flush_page(pool, 1, 0),
        lambda: client.flush_object(pool, 1),
        lambda: client.destroy_pool(pool),
        lambda: client.stats(),
        lambda: client.put_pages(pool, []),
        lambda: client.get_pages(pool, [(1, 0)]),
    ):
        with pytest.raises(tmem.ConnectionLost):
            call()
    client.close()  # closing again does nothing
    assert host.admin.stats()["pages"] == 0  # its private pages went with it


# --- put and get -------------------------------------------------------------


def test_put_copies_the_callers_buffer(client):
    pool = client.new_pool(persistent=True)
    buf = bytearray(page(1))
    assert client.put_page(pool, 1, 0, buf)
    buf[:10] = b"0123456789"
    assert client.get_page(pool, 1, 0) == page(1)


def test_put_accepts_memoryview_and_get_returns_bytes(client):
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, memoryview(page(2)))
    got = client.get_page(pool, 1, 0)
    assert type(got) is bytes and got == page(2)


def test_put_copies_a_view_of_a_buffer_of_any_flat_shape(client):
    """Views are copied, not kept, whatever their shape; one that is not a page of
    contiguous bytes is refused with InvalidArgument, never stored wrong."""
    pool = client.new_pool(persistent=True)
    buf = bytearray(page(1) + page(2))
    flat = memoryview(buf)[PAGE:]  # a slice of a larger buffer, as the daemon has them
    column = memoryview(buf)[:PAGE].cast("B", (PAGE, 1))  # flat bytes, two dimensions
    rows = memoryview(buf)[:PAGE].cast("B", (PAGE // 64, 64))  # len() is not the page size
    assert client.put_page(pool, 1, 0, flat)
    assert client.put_page(pool, 1, 1, column)
    assert client.put_page(pool, 1, 2, rows)
    buf[:] = bytes(len(buf))
    assert client.get_page(pool, 1, 0) == page(2)
    assert client.get_page(pool, 1, 1) == page(1)
    assert client.get_page(pool, 1, 2) == page(1)
    wide = memoryview(bytearray(4 * PAGE)).cast("I")  # PAGE items, 4 * PAGE bytes
    strided = memoryview(bytearray(2 * PAGE))[::2]  # PAGE bytes, not contiguous
    for bad in (wide, strided):
        with pytest.raises(tmem.InvalidArgument):
            client.put_page(pool, 1, 3, bad)
    assert client.get_page(pool, 1, 3) is None


def test_persistent_get_always_returns_and_is_not_destructive(client):
    pool = client.new_pool(persistent=True)
    for i in range(50):
        assert client.put_page(pool, i // 10, i % 10, page(i))
    for _ in range(2):
        for i in range(50):
            assert client.get_page(pool, i // 10, i % 10) == page(i)


def test_private_ephemeral_get_is_destructive(client):
    pool = client.new_pool()
    assert client.put_page(pool, 1, 0, page(1))
    assert client.get_page(pool, 1, 0) == page(1)
    assert client.get_page(pool, 1, 0) is None


def test_shared_ephemeral_get_is_not_destructive(host):
    shared = uuid.uuid4()
    host.admin.authorize_shared("a", shared)
    a = host.connect("a")
    pool = a.new_pool(shared=True, uuid=shared)
    assert a.put_page(pool, 1, 0, page(1))
    assert a.get_page(pool, 1, 0) == page(1)
    assert a.get_page(pool, 1, 0) == page(1)


def test_put_put_get_returns_the_second_page(client):
    for persistent in (True, False):
        pool = client.new_pool(persistent=persistent)
        assert client.put_page(pool, 1, 0, page(1))
        assert client.put_page(pool, 1, 0, page(2))
        assert client.get_page(pool, 1, 0) == page(2)


def test_rejected_duplicate_put_flushes_the_old_page(host):
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, page(1))
    host.admin.set_client("vm1", frozen=True)
    assert client.put_page(pool, 1, 0, page(2)) is False
    assert client.get_page(pool, 1, 0) is None


def test_get_get_a_miss_stays_a_miss_until_the_next_put(client):
    pool = client.new_pool(persistent=True)
    assert client.get_page(pool, 1, 0) is None
    assert client.get_page(pool, 1, 0) is None
    assert client.put_page(pool, 1, 0, page(3))
    assert client.get_page(pool, 1, 0) == page(3)


def test_flush_page_makes_later_gets_miss(client):
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, page(1))
    assert client.put_page(pool, 1, 1, page(2))
    client.flush_page(pool, 1, 0)
    client.flush_page(pool, 1, 9)  # flushing nothing is fine
    assert client.get_page(pool, 1, 0) is None
    assert client.get_page(pool, 1, 1) == page(2)


def test_flush_object_makes_every_page_of_it_miss(client):
    pool = client.new_pool(persistent=True)
    for i in range(8):
        assert client.put_page(pool, 1, i, page(i))
    assert client.put_page(pool, 2, 0, page(99))
    client.flush_object(pool, 1)
    assert all(client.get_page(pool, 1, i) is None for i in range(8))
    assert client.get_page(pool, 2, 0) == page(99)


# --- shared pools --------------------------------------------------------------


def test_unauthorized_client_cannot_join_a_shared_pool(host):
    shared = uuid.uuid4()
    host.admin.authorize_shared("a", shared)
    a, b = host.connect("a"), host.connect("b")
    a.new_pool(shared=True, uuid=shared)
    with pytest.raises(tmem.PermissionDenied):
        b.new_pool(shared=True, uuid=shared)
    with pytest.raises(tmem.PermissionDenied):
        b.new_pool(shared=True, uuid=uuid.uuid4())


def test_authorized_clients_share_one_pool(host):
    shared = uuid.uuid4()
    a, b = host.connect("a"), host.connect("b")
    for name in ("a", "b"):
        host.admin.authorize_shared(name, shared)
    pa = a.new_pool(shared=True, uuid=shared)
    pb = b.new_pool(shared=True, uuid=shared)
    assert a.put_page(pa, 3, 1, page(31))
    assert b.get_page(pb, 3, 1) == page(31)
    b.flush_page(pb, 3, 1)
    assert a.get_page(pa, 3, 1) is None


def test_shared_pool_outlives_the_client_that_made_it(host):
    shared = uuid.uuid4()
    a, b = host.connect("a"), host.connect("b")
    for name in ("a", "b"):
        host.admin.authorize_shared(name, shared)
    pa = a.new_pool(shared=True, uuid=shared)
    pb = b.new_pool(shared=True, uuid=shared)
    assert a.put_page(pa, 1, 0, page(1))
    a.destroy_pool(pa)
    assert b.get_page(pb, 1, 0) == page(1)
    assert b.stats()["pages"] == 1  # the pages are now charged to b


def test_revoked_client_leaves_the_shared_pool(host):
    shared = uuid.uuid4()
    host.admin.authorize_shared("a", shared)
    a = host.connect("a")
    pool = a.new_pool(shared=True, uuid=shared)
    host.admin.revoke_shared("a", shared)
    with pytest.raises(tmem.NoSuchPool):
        a.get_page(pool, 1, 0)
    with pytest.raises(tmem.PermissionDenied):
        a.new_pool(shared=True, uuid=shared)


def test_shared_pool_needs_a_uuid(client):
    with pytest.raises(tmem.InvalidArgument):
        client.new_pool(shared=True, uuid=None)


def test_joining_with_a_different_kind_is_refused(host):
    shared = uuid.uuid4()
    for name in ("a", "b"):
        host.admin.authorize_shared(name, shared)
    host.connect("a").new_pool(shared=True, uuid=shared)
    with pytest.raises(tmem.InvalidArgument):
        host.connect("b").new_pool(persistent=True, shared=True, uuid=shared)


# --- capacity, weights and caps ----------------------------------------------------


def test_host_never_holds_more_than_its_capacity(make_host):
    host = make_host(room_for(20), compress=None)
    client = host.connect("vm1")
    pool = client.new_pool()
    for i in range(100):
        assert client.put_page(pool, 1, i, page(i))
        assert host.admin.stats()["bytes"] <= room_for(20)
    assert client.stats()["evictions"] == 80
    assert client.stats()["pages"] == 20


def test_ephemeral_eviction_takes_the_least_recently_used(make_host):
    host = make_host(room_for(10), compress=None)
    client = host.connect("vm1")
    pool = client.new_pool()
    for i in range(15):
        assert client.put_page(pool, 1, i, page(i))
    survivors = [i for i in range(15) if client.get_page(pool, 1, i) is not None]
    assert survivors == list(range(5, 15))


def test_a_shared_ephemeral_get_makes_the_page_the_most_recently_used(make_host):
    host = make_host(room_for(10), compress=None)
    shared = uuid.uuid4()
    host.admin.authorize_shared("vm1", shared)
    client = host.connect("vm1")
    pool = client.new_pool(shared=True, uuid=shared)
    for i in range(10):
        assert client.put_page(pool, 1, i, page(i))
    assert client.get_page(pool, 1, 0) == page(0)  # the oldest page becomes the newest
    for i in range(10, 15):
        assert client.put_page(pool, 1, i, page(i))
    survivors = [i for i in range(15) if client.get_page(pool, 1, i) is not None]
    assert survivors == [0, *range(6, 15)]


def test_persistent_pages_are_never_evicted_and_excess_puts_are_refused(make_host):
    host = make_host(room_for(10), compress=None)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    accepted = [i for i in range(15) if client.put_page(pool, 1, i, page(i))]
    assert accepted == list(range(10))
    assert all(client.get_page(pool, 1, i) == page(i) for i in accepted)
    assert client.stats()["failed_puts"] == 5
    assert client.stats()["reject_capacity"] == 5


def test_persistent_put_evicts_own_ephemeral_pages_first(make_host):
    host = make_host(room_for(10, objects=3, pools=3), compress=None)
    a, b = host.connect("a"), host.connect("b", weight=1)
    ea, eb, pa = a.new_pool(), b.new_pool(), a.new_pool(persistent=True)
    for i in range(3):
        assert a.put_page(ea, 1, i, page(i))
    for i in range(7):
        assert b.put_page(eb, 1, i, page(i))  # b is now the most over its share
    assert a.put_page(pa, 1, 0, page(50))
    assert a.stats()["evictions"] == 1 and b.stats()["evictions"] == 0


def test_persistent_put_then_evicts_the_client_most_over_its_share(make_host):
    host = make_host(room_for(10, objects=3, pools=3), compress=None)
    a, b, c = host.connect("a"), host.connect("b"), host.connect("c")
    eb, ec, pa = b.new_pool(), c.new_pool(), a.new_pool(persistent=True)
    for i in range(3):
        assert b.put_page(eb, 1, i, page(i))
    for i in range(7):
        assert c.put_page(ec, 1, i, page(i))
    assert a.put_page(pa, 1, 0, page(50))
    assert c.stats()["evictions"] == 1 and b.stats()["evictions"] == 0


def test_ephemeral_memory_is_shared_by_weight_under_contention(make_host):
    host = make_host(room_for(40, objects=2, pools=2), compress=None)
    light, heavy = host.connect("light", weight=1), host.connect("heavy", weight=3)
    pl, ph = light.new_pool(), heavy.new_pool()
    for i in range(400):
        light.put_page(pl, 1, i, page(i))
        heavy.put_page(ph, 1, i, page(i))
    assert light.stats()["pages"] == 10
    assert heavy.stats()["pages"] == 30


def test_cap_bounds_what_a_client_holds(make_host):
    host = make_host(100 * COST, compress=None)
    cap = room_for(5, objects=1, pools=2)
    client = host.connect("vm1", cap=cap)
    eph, pers = client.new_pool(), client.new_pool(persistent=True)
    for i in range(20):
        assert client.put_page(eph, 1, i, page(i))
    assert client.stats()["bytes"] <= cap and client.stats()["pages"] == 5
    accepted = sum(client.put_page(pers, 1, i, page(i)) for i in range(8))
    assert accepted == 5 and client.stats()["reject_cap"] == 3
    assert all(client.get_page(eph, 1, i) is None for i in range(20))


def test_lowering_a_cap_evicts_only_ephemeral_pages(make_host):
    host = make_host(100 * COST, compress=None)
    client = host.connect("vm1")
    eph, pers = client.new_pool(), client.new_pool(persistent=True)
    for i in range(10):
        assert client.put_page(eph, 1, i, page(i))
        assert client.put_page(pers, 1, i, page(i))
    host.admin.set_client("vm1", cap=4 * COST)
    assert all(client.get_page(pers, 1, i) == page(i) for i in range(10))
    assert client.stats()["pages"] == 10
    assert client.put_page(pers, 1, 10, page(10)) is False


def test_shrinking_capacity_evicts_ephemeral_first_and_keeps_persistent(make_host):
    host = make_host(room_for(40, objects=2, pools=2), compress=None)
    client = host.connect("vm1")
    eph, pers = client.new_pool(), client.new_pool(persistent=True)
    for i in range(20):
        assert client.put_page(pers, 1, i, page(i))
        assert client.put_page(eph, 1, i, page(i))
    # room for ten pages in two objects: the nine left below and one of a new object
    host.admin.set_capacity(room_for(10, objects=2, pools=2))
    assert all(client.get_page(eph, 1, i) is None for i in range(20))
    assert all(client.get_page(pers, 1, i) == page(i) for i in range(20))
    assert client.put_page(pers, 2, 0, page(1)) is False
    for i in range(11):
        client.flush_page(pers, 1, i)
    assert client.put_page(pers, 2, 0, page(1)) is True


def test_growing_capacity_accepts_more_pages(make_host):
    host = make_host(room_for(2), compress=None)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    assert [client.put_page(pool, 1, i, page(i)) for i in range(3)] == [True, True, False]
    host.admin.set_capacity(room_for(3))
    assert client.put_page(pool, 1, 2, page(2))


def test_frozen_client_puts_are_refused_but_gets_and_flushes_work(host):
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, page(1))
    host.admin.set_client("vm1", frozen=True)
    assert client.put_page(pool, 1, 1, page(2)) is False
    assert client.get_page(pool, 1, 0) == page(1)
    client.flush_page(pool, 1, 0)
    assert client.get_page(pool, 1, 0) is None
    assert client.stats()["reject_frozen"] == 1
    host.admin.set_client("vm1", frozen=False)
    assert client.put_page(pool, 1, 1, page(2))


@pytest.mark.parametrize(
    "options",
    [{"weight": 0}, {"weight": -2}, {"cap": -1}, {"weight": 1.5}, {"cap": "lots"},
     {"frozen": "yes"}, {"cap": 1.5}],
)
def test_bad_client_settings_are_refused(host, options):
    host.connect("vm1")
    with pytest.raises(tmem.InvalidArgument):
        host.admin.set_client("vm1", **options)


def test_settings_of_a_client_not_connected_apply_when_it_connects(host):
    host.admin.set_client("later", cap=2 * COST, frozen=True)
    client = host.connect("later")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 0, page(0)) is False  # frozen from its first call
    assert client.stats()["cap"] == 2 * COST
    with pytest.raises(tmem.InvalidArgument):
        host.admin.set_client("", weight=2)


def test_a_clients_policy_survives_its_reconnect(host):
    client = host.connect("vm1")
    host.admin.set_client("vm1", cap="8K", weight=3, frozen=True)
    client.close()
    again = host.connect("vm1")
    stats = again.stats()
    assert (stats["cap"], stats["weight"], stats["frozen"]) == (8192, 3, True)
    host.admin.set_client("vm1", frozen=False)
    pool = again.new_pool(persistent=True)
    for i in range(8):
        again.put_page(pool, 1, i, page(i))
    after = again.stats()
    assert after["reject_cap"] > 0 and after["bytes"] <= 8192


@pytest.mark.parametrize("capacity", [-1, 1.5, "big"])
def test_bad_capacity_is_refused(host, capacity):
    with pytest.raises(tmem.InvalidArgument):
        host.admin.set_capacity(capacity)


# --- statistics ------------------------------------------------------------------

COUNTERS = (
    "puts",
    "succ_puts",
    "failed_puts",
    "gets",
    "succ_gets",
    "flushes",
    "flush_objects",
    "evictions",
    "pages",
    "bytes",
)


def test_statistics_count_every_operation(make_host):
    capacity = room_for(3, objects=2, pools=2)
    host = make_host(capacity, compress=None)
    client = host.connect("vm1")
    eph, pers = client.new_pool(), client.new_pool(persistent=True)
    for i in range(2):
        assert client.put_page(pers, 1, i, page(i))
    for i in range(3):
        assert client.put_page(eph, 1, i, page(i))  # two evictions: only one page fits
    assert client.put_page(pers, 1, 9, page(9)) is True  # evicts the last ephemeral page
    assert client.put_page(pers, 1, 10, page(9)) is False
    client.get_page(pers, 1, 0)
    client.get_page(eph, 1, 0)
    client.flush_page(pers, 1, 0)
    client.flush_object(pers, 1)
    stats = client.stats()
    assert all(name in stats for name in COUNTERS)
    expected = dict(puts=7, succ_puts=6, failed_puts=1, gets=2, succ_gets=1, flushes=1)
    # nothing stored is left to pay for: only the two pools
    expected.update(flush_objects=1, evictions=3, pages=0, bytes=2 * POOL_METADATA_BYTES)
    assert {k: stats[k] for k in expected} == expected
    pools = stats["pools"]
    assert pools[eph]["evictions"] == 3 and pools[eph]["puts"] == 3
    assert pools[pers]["succ_puts"] == 3 and pools[pers]["failed_puts"] == 1
    assert all(name in pools[pers] for name in COUNTERS)
    totals = host.admin.stats()
    assert totals["puts"] == 7 and totals["capacity"] == capacity
    assert {"compression_ratio", "dedup_ratio", "clients"} <= set(totals)


def test_host_statistics_add_up_over_clients(host):
    clients = [host.connect(f"vm{i}") for i in range(3)]
    for n, client in enumerate(clients):
        pool = client.new_pool(persistent=True)
        for i in range(n + 1):
            assert client.put_page(pool, 1, i, page(i))
    totals = host.admin.stats()
    assert totals["pages"] == 6 == sum(c.stats()["pages"] for c in clients)
    assert set(totals["clients"]) == {"vm0", "vm1", "vm2"}
    assert totals["succ_puts"] == 6


def test_a_client_past_its_share_leaves_the_last_room_to_others(make_host):
    # room for 64 pages in four objects (two of a's and two of b's)
    host = make_host(room_for(64, objects=4, pools=2), compress=None)
    a, b = host.connect("a"), host.connect("b")
    pa, pb = a.new_pool(persistent=True), b.new_pool(persistent=True)
    held_a = sum(a.put_page(pa, 1, i, page(i)) for i in range(64))
    assert held_a == 62  # the last 1/32 of the host is kept for clients within their share
    assert a.stats()["reject_share"] == 2
    held_b = sum(b.put_page(pb, 1, i, page(i)) for i in range(4))
    assert held_b == 2 and b.stats()["reject_capacity"] == 2
    for i in range(10):
        a.flush_page(pa, 1, i)
    assert sum(b.put_page(pb, 2, i, page(i)) for i in range(9)) == 9  # b takes the room
    assert a.put_page(pa, 2, 0, page(0)) is False  # the host is nearly full: a is past half
    assert a.stats()["reject_share"] == 3
    assert all(a.get_page(pa, 1, i) == page(i) for i in range(10, 62))

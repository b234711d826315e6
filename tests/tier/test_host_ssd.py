"""A host with an SSD tier: demotion, promotion, versions, accounting, a failing and a full SSD."""

from __future__ import annotations

import errno
import random
import resource
import signal
import time

import pytest

import tmem
from tests.charges import COST, room_for
from tmem.engine.tiering import complete_demotions, pick_demotions
from tmem.tier.demoter import HIGH_WATERMARK
from tmem.tier.ssd import SsdTier

PAGE = 4096
SEG = 128 << 10


def page(n: int) -> bytes:
    """Unique to ``n``, compresses to about half."""
    return random.Random(n).randbytes(PAGE // 2) + bytes(PAGE // 2)


@pytest.fixture
def make(tmp_path):
    hosts = []

    def build(capacity=256 << 10, size=64 * SEG, background=False, **options):
        tier = SsdTier(str(tmp_path), size, segment_size=SEG)
        host = tmem.Host(capacity, tiers=[tier], demote_in_background=background, **options)
        hosts.append(host)
        return host, tier

    yield build
    for host in hosts:
        host.close()


def charges_add_up(host: tmem.Host) -> None:
    engine = host.engine
    clients = engine.clients.values()
    assert engine.pages == sum(c.pages for c in clients)
    assert sum(p.bytes for p in engine.pools.values()) == sum(c.bytes for c in clients)
    assert engine.eph_used == sum(c.eph_bytes for c in clients) >= 0
    state = engine.tiering
    assert sum(state.pages) == sum(c.tier_pages for c in clients)
    assert sum(state.bytes) == sum(c.tier_bytes for c in clients)
    assert engine.used <= engine.capacity or engine.eph_used == 0


def test_background_demotion_keeps_ram_below_the_watermark_and_pages_come_back(make):
    host, tier = make(background=True)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    for i in range(200):  # about 4 times what RAM holds
        assert client.put_page(pool, 1, i, page(i)), i
        if i % 10 == 9:  # give the demoter time to catch up
            deadline = time.monotonic() + 10
            while host.engine.used > HIGH_WATERMARK * host.capacity and time.monotonic() < deadline:
                time.sleep(0.01)
    stats = host.stats()
    assert stats["tiering"]["demotions"] >= 100
    assert stats["tiers"][0]["host_pages"] >= 100
    assert all(client.get_page(pool, 1, i) == page(i) for i in range(200))
    deadline = time.monotonic() + 10  # the thread brings fetched pages back to RAM
    while host.stats()["tiering"]["promotions"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.stats()["tiering"]["promotions"] > 0
    with host.lock:
        charges_add_up(host)


def test_puts_demote_when_the_background_cannot_keep_up(make):
    # No thread here: only the puts themselves can make room by demoting, and they must,
    # or the host evicts its ephemeral pages to make room.
    host, tier = make()
    host.tiers.assisting = True
    client = host.connect("vm1")
    pool = client.new_pool(persistent=False, shared=False)
    for i in range(300):  # about 6 times what RAM holds
        assert client.put_page(pool, 1, i, page(i)), i
    stats = host.stats()
    assert stats["tiering"]["demotions"] >= 200
    assert stats["evictions"] < 50
    assert host.tiers.assists > 0
    assert sum(client.get_page(pool, 1, i) == page(i) for i in range(300)) >= 250
    charges_add_up(host)


def test_a_get_promotes_the_page_back_to_ram(make):
    host, tier = make()
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    client.put_page(pool, 1, 0, page(0))
    assert host.demote(all_pages=True) == 1
    assert client.stats()["tier_pages"] == 1 and tier.stats()["pages"] == 1
    assert client.get_page(pool, 1, 0) == page(0)
    assert client.stats()["tier_pages"] == 0 and client.stats()["promotions"] == 1
    host.demote()  # frees the tier copy
    assert tier.stats()["pages"] == 0
    assert client.get_page(pool, 1, 0) == page(0)  # now from RAM


def test_a_page_overwritten_while_it_is_written_out_is_not_moved(make):
    host, tier = make()
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    client.put_page(pool, 1, 0, page(0))
    engine = host.engine
    batch = pick_demotions(engine, 10, 1 << 30)  # the old version, exported
    client.put_page(pool, 1, 0, page(1))  # overwritten meanwhile
    complete_demotions(engine, 0, batch, tier.store([_demotion(c) for c in batch]))
    assert engine.tiering.counters["demotions_stale"] == 1
    assert client.get_page(pool, 1, 0) == page(1)
    host.demote()  # the stale copy in the tier is freed
    assert tier.stats()["pages"] == 0


def _demotion(c):
    from tmem.tier.base import Demotion

    return Demotion(c.tag, c.pid, c.blob, c.persistent)


def test_a_flushed_page_is_not_moved_either(make):
    host, tier = make()
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    client.put_page(pool, 1, 0, page(0))
    engine = host.engine
    batch = pick_demotions(engine, 10, 1 << 30)
    client.flush_page(pool, 1, 0)
    client.put_page(pool, 1, 1, page(1))  # may reuse the page id: the version differs
    complete_demotions(engine, 0, batch, tier.store([_demotion(c) for c in batch]))
    assert client.get_page(pool, 1, 0) is None
    assert client.get_page(pool, 1, 1) == page(1)


def test_every_removal_reaches_the_tier(make):
    host, tier = make()
    a, b = host.connect("a"), host.connect("b")
    pa = a.new_pool(persistent=True)
    pb = b.new_pool()
    for i in range(10):
        a.put_page(pa, i % 3, i, page(i))
        b.put_page(pb, 1, i, page(100 + i))
    assert host.demote(all_pages=True) == 20
    a.flush_page(pa, 0, 0)
    a.flush_object(pa, 1)
    b.close()  # a departing client's private pages go
    host.demote()
    left = [i for i in range(10) if i % 3 == 2 or (i % 3 == 0 and i != 0)]
    assert tier.stats()["pages"] == len(left)
    a.destroy_pool(pa)
    host.demote()
    assert tier.stats()["pages"] == 0
    charges_add_up(host)


def test_tier_bytes_count_against_the_cap(make):
    host, tier = make(capacity=4 << 20, compress=None)
    cap = room_for(20)
    client = host.connect("vm1", cap=cap)
    pool = client.new_pool(persistent=True)
    stored = sum(client.put_page(pool, 1, i, page(i)) for i in range(30))
    assert stored == 20
    host.demote(all_pages=True)
    stats = client.stats()
    assert stats["tier_bytes"] >= 20 * PAGE and stats["bytes"] < 20 * 200
    # RAM is empty, the cap is not: only what the tier bytes leave of it
    room = (cap - stats["bytes"] - stats["tier_bytes"]) // COST
    assert room < 5
    assert sum(client.put_page(pool, 1, 20 + i, page(i)) for i in range(5)) == room
    assert client.stats()["reject_cap"] == 10 + 5 - room


def test_ephemeral_pages_the_ssd_drops_leave_the_host_too(make):
    host, tier = make(capacity=1 << 20, size=8 * SEG)
    client = host.connect("vm1")
    pool = client.new_pool()
    for i in range(600):  # 1.2 MB compressed through a 1 MiB log
        client.put_page(pool, 1, i, page(i))
        if i % 50 == 49:
            host.demote(all_pages=True)
    host.demote()
    stats = host.stats()
    assert stats["tiers"][0]["dropped"] > 0
    assert stats["tiering"]["tier_dropped"] > 0
    assert stats["evictions"] >= stats["tiering"]["tier_dropped"]
    hits = [i for i in range(600) if client.get_page(pool, 1, i) is not None]
    assert hits and len(hits) < 600
    charges_add_up(host)


def test_an_ssd_write_error_loses_no_persistent_page(make):
    host, tier = make(capacity=512 << 10, compress=None)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    for i in range(40):
        assert client.put_page(pool, 1, i, page(i))
    assert host.demote(all_pages=True) == 40
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (SEG * 2, limit[1]))
        for i in range(40, 140):
            client.put_page(pool, 1, i, page(i))
        assert host.demote(all_pages=True) < 100
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, old)
    stats = host.stats()
    assert stats["tiers"][0]["healthy"] is False and stats["tiers"][0]["write_errors"] == 1
    stored = [i for i in range(140) if client.get_page(pool, 1, i) is not None]
    assert all(client.get_page(pool, 1, i) == page(i) for i in stored)
    assert set(range(40)) <= set(stored)  # those the tier had, and all still in RAM
    assert stats["succ_puts"] == len(stored)
    charges_add_up(host)


def test_a_full_ssd_refuses_demotion_and_loses_nothing(make):
    host, tier = make(capacity=512 << 10, size=4 * SEG, compress=None)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    accepted = []
    for i in range(400):
        if client.put_page(pool, 1, i, page(i)):
            accepted.append(i)
        if i % 20 == 19:
            host.demote(all_pages=True)
    stats = host.stats()
    assert stats["tiering"]["demotions_refused"] > 0 and stats["tiers"][0]["healthy"]
    assert stats["reject_capacity"] > 0  # RAM and log both full of persistent pages
    assert len(accepted) * PAGE > 4 * SEG  # more than the log holds: RAM holds the rest
    assert all(client.get_page(pool, 1, i) == page(i) for i in accepted)
    charges_add_up(host)


def test_a_late_promotion_never_brings_back_a_page_flushed_or_overwritten_meanwhile(make):
    from tmem.engine.tiering import Fetch, bring_back

    host, tier = make()
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    for i in range(3):
        assert client.put_page(pool, 1, i, page(i))
    host.demote(all_pages=True)
    engine, state = host.engine, client._state
    with host.lock:
        fetches = [engine.get(state, pool, 1, i) for i in range(3)]
    assert all(isinstance(f, Fetch) for f in fetches)
    blobs = [tier.load(f.loc, f.tag) for f in fetches]
    client.flush_page(pool, 1, 0)  # between the read and the promotion: these win
    assert client.put_page(pool, 1, 1, page(100))
    with host.lock:
        assert not bring_back(engine, fetches[0], blobs[0])
        assert not bring_back(engine, fetches[1], blobs[1])
        assert bring_back(engine, fetches[2], blobs[2])  # unchanged: it comes back
        charges_add_up(host)
    assert client.get_page(pool, 1, 0) is None
    assert client.get_page(pool, 1, 1) == page(100)
    assert client.get_page(pool, 1, 2) == page(2)
    stats = host.stats()
    assert stats["pages"] == 2 and stats["tiering"]["promotions"] == 1


class CountingLock:
    """The host's lock, counting how many times it was taken."""

    def __init__(self, lock) -> None:
        self.lock = lock
        self.taken = 0

    def __enter__(self):
        self.lock.acquire()
        self.taken += 1
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


def test_promotions_let_go_of_the_lock_every_few_pages(make):
    # Gets queue their pages for promotion; the thread brings them back at most 8 per hold
    # of the host's lock, so a get never waits long behind it.
    host, tier = make(capacity=1 << 20)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    n = 40
    for i in range(n):
        assert client.put_page(pool, 1, i, page(i))
    assert host.demote(all_pages=True) == n
    tiers = host.tiers
    with host.lock:
        fetches = [host.engine.get(client._state, pool, 1, i) for i in range(n)]
    tiers.pending.extend((f, tier.load(f.loc, f.tag)) for f in fetches)
    tiers.pending_bytes = sum(len(blob) for _, blob in tiers.pending)
    counting = tiers.lock = CountingLock(host.lock)
    assert tiers.promote_pending() == n
    assert tiers.pending_bytes == 0
    assert counting.taken >= 5
    assert host.stats()["tiering"]["promotions"] == n
    assert all(client.get_page(pool, 1, i) == page(i) for i in range(n))
    charges_add_up(host)


def test_while_gets_of_demoted_pages_come_promotions_and_frees_wait(make, monkeypatch):
    # The thread keeps out of the gets' way: while they come it promotes nothing until the
    # waiting pages hold more than half their limit, then one each time a get starts reading
    # its tier (while that get waits for its read), and frees no tier copy until more than
    # BUSY_GARBAGE wait; once the gets pause it does both in full.
    import tmem.tier.demoter as demoter

    monkeypatch.setattr(demoter, "BUSY_NS", 60 * 10**9)  # "coming" for this whole test
    host, tier = make(capacity=1 << 20)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    n = 40
    for i in range(n + 1):
        assert client.put_page(pool, 1, i, page(i))
    assert host.demote(all_pages=True) == n + 1
    tiers = host.tiers
    with host.lock:
        fetches = [host.engine.get(client._state, pool, 1, i) for i in range(n)]
    tiers.pending.extend((f, tier.load(f.loc, f.tag)) for f in fetches)
    tiers.pending_bytes = sum(len(blob) for _, blob in tiers.pending)
    last10 = sum(len(blob) for _, blob in list(tiers.pending)[-10:])
    monkeypatch.setattr(demoter, "PENDING_SHARE", 1 << 40)  # the limit: twice the last 10
    monkeypatch.setattr(demoter, "PENDING_MIN_BYTES", 2 * last10)
    # A get about to read its tier wakes the thread, if it waits for one.
    tiers._armed = True
    assert client.get_page(pool, 1, n) == page(n)
    assert not tiers._armed and tiers._reading.acquire(blocking=False)
    counting = tiers.lock = CountingLock(host.lock)
    tiers.last_fetch = time.perf_counter_ns()  # a get began just now
    assert tiers.promote_pending(defer=True) == 0  # no get is reading its tier now
    tiers._reading.release()
    assert tiers.promote_pending(defer=True) == 1  # one page for that read, then it waits
    for _ in range(n - 11):
        tiers._signal_read()
        assert tiers.promote_pending(defer=True) == 1
    assert tiers.promote_pending(defer=True) == 0  # down to half the limit
    assert counting.taken == n - 10 and len(tiers.pending) == 10
    tiers.step(defer=True)
    assert tier.stats()["pages"] == n + 1  # the promoted pages' copies are not freed yet
    assert len(host.engine.tiering.garbage) == n - 9
    tiers.last_fetch = 0  # the gets paused
    assert tiers.promote_pending(defer=True) == 10
    tiers.step(defer=True)
    assert tier.stats()["pages"] == 0 and not host.engine.tiering.garbage
    assert host.stats()["tiering"]["promotions"] == n + 1  # the get's own page came back too
    assert all(client.get_page(pool, 1, i) == page(i) for i in range(n + 1))
    charges_add_up(host)


def test_gets_use_the_tiers_quick_load_and_its_own_load_where_that_cannot_tell(
    make, monkeypatch
):
    # The host calls the SSD tier's one compiled load directly; where it answers False (a
    # check failed) or raises, the tier's own load is asked, and it reads the page.
    host, tier = make()
    if tier.quick_load is None:
        pytest.skip("the compiled load is not used here")
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    for i in range(3):
        client.put_page(pool, 1, i, page(i))
    assert host.demote(all_pages=True) == 3
    quick, calls = tier.quick_load, []
    # get 0: read; get 1: False, and False again inside the tier's load, which then reads
    # carefully; get 2: OSError, then the tier's load reads it.
    answers = iter([None, False, False, OSError(errno.EIO, "a failing read"), None])

    def flaky(loc, tag):
        calls.append(loc)
        answer = next(answers, None)
        if isinstance(answer, OSError):
            raise answer
        return False if answer is False else quick(loc, tag)

    monkeypatch.setattr(tier, "quick_load", flaky)
    for i in range(3):
        assert client.get_page(pool, 1, i) == page(i)
    assert len(calls) == 5
    assert tier.stats()["load_failures"] == 0

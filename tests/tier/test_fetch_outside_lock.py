"""A get of a demoted page reads its tier outside the host's lock, and loses to a put or
flush that runs meanwhile (a stale copy never comes back)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tmem
from tmem.tier.ssd import SsdTier

PAGE = 4096
WAIT = 10  # seconds: a bound on waits that never run out when the protection holds


def page(n: int) -> bytes:
    return random.Random(n).randbytes(PAGE // 2) + bytes(PAGE // 2)


class GatedSsd(SsdTier):
    """A real SSD tier whose loads, once gated, wait for the test to open the gate."""

    def __init__(self, path: str) -> None:
        super().__init__(path, 4 << 20, segment_size=128 << 10)
        self.gated = False
        self.inside = threading.Event()  # a load is waiting at the gate
        self.gate = threading.Event()
        self.quick_load = None  # so that a host's every load comes through the gate

    def load(self, loc: int, tag: int) -> bytes | None:
        if self.gated:
            self.inside.set()
            self.gate.wait(WAIT)
        return super().load(loc, tag)


class Background:
    """A call run in a thread; its result or error once it is done."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def wait(self) -> Any:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the call never finished"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def tiered(tmp_path) -> Iterator[tuple[tmem.Host, GatedSsd]]:
    tier = GatedSsd(str(tmp_path))
    host = tmem.Host(64 << 20, tiers=[tier], demote_in_background=False)
    yield host, tier
    tier.gate.set()
    host.close()


def demoted(host: tmem.Host, tier: GatedSsd, persistent: bool = True, shared: bool = False):
    client = host.connect("vm1")
    pool = client.new_pool(persistent=persistent, shared=shared)
    for i in range(8):
        assert client.put_page(pool, 1, i, page(i))
    assert host.demote(all_pages=True) == 8
    tier.gated = True
    return client, pool


def test_a_slow_tier_stalls_no_other_call(tiered):
    host, tier = tiered
    client, pool = demoted(host, tier)
    other = host.connect("vm2")
    other_pool = other.new_pool(persistent=True)
    slow = Background(lambda: client.get_page(pool, 1, 0))
    assert tier.inside.wait(WAIT)
    # While the tier is still reading, other clients (and this one) are served.
    quick = Background(
        lambda: (
            other.put_page(other_pool, 5, 0, page(50)),
            other.get_page(other_pool, 5, 0),
            client.put_page(pool, 2, 0, page(20)),
            host.stats()["pages"],
        )
    )
    stored, got, put, _ = quick.wait()
    assert stored and got == page(50) and put
    assert slow.thread.is_alive()  # the slow get is still waiting on its tier
    tier.gate.set()
    assert slow.wait() == page(0)


def test_a_put_during_the_fetch_wins(tiered):
    host, tier = tiered
    client, pool = demoted(host, tier)
    get = Background(lambda: client.get_page(pool, 1, 3))
    assert tier.inside.wait(WAIT)
    assert Background(lambda: client.put_page(pool, 1, 3, page(300))).wait()
    tier.gate.set()
    assert get.wait() == page(300)  # never the demoted, older copy
    assert client.get_page(pool, 1, 3) == page(300)
    stats = client.stats()
    assert stats["gets"] == 2 and stats["succ_gets"] == 2  # the get asked again counts once


def test_a_flush_during_the_fetch_wins(tiered):
    host, tier = tiered
    client, pool = demoted(host, tier)
    get = Background(lambda: client.get_page(pool, 1, 4))
    assert tier.inside.wait(WAIT)
    Background(lambda: client.flush_page(pool, 1, 4)).wait()
    tier.gate.set()
    assert get.wait() is None
    assert client.get_page(pool, 1, 4) is None  # get-get
    assert client.get_page(pool, 1, 5) == page(5)


def test_a_flush_during_a_batch_get_wins_and_the_rest_come_back(tiered):
    host, tier = tiered
    client, pool = demoted(host, tier)
    batch = Background(lambda: client.get_pages(pool, [(1, i) for i in range(8)]))
    assert tier.inside.wait(WAIT)
    Background(lambda: client.flush_object(pool, 1)).wait()
    tier.gate.set()
    got = batch.wait()
    # The flush came after the batch began: each page is either gone or exact.
    assert all(data is None or data == page(i) for i, data in enumerate(got))
    assert got[0] is None
    assert client.get_pages(pool, [(1, i) for i in range(8)]) == [None] * 8


def test_two_gets_of_a_private_ephemeral_page_take_it_once(tiered):
    host, tier = tiered
    client, pool = demoted(host, tier, persistent=False)
    gets = [Background(lambda: client.get_page(pool, 1, 6)) for _ in range(2)]
    assert tier.inside.wait(WAIT)
    tier.gate.set()
    results = [g.wait() for g in gets]
    assert sorted(results, key=lambda r: r is None) == [page(6), None]
    assert client.get_page(pool, 1, 6) is None

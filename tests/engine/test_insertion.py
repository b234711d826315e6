"""The order within a client: the adaptive order keeps part of a loop that LRU loses
entirely, and stays LRU where LRU does well; both are selectable."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable

import pytest

import tmem
from tests.charges import room_for
from tmem.engine.insertion import SHADOW_PAGES, shadow_mask

PAGE = bytes(4096)
TMEM_PAGES = 200
PRIVATE_PAGES = 32


def replay(order: str, refs: Iterable[int]) -> tuple[int, str]:
    """A guest with a private LRU cache of PRIVATE_PAGES and cleancache behind it, on a
    host that holds TMEM_PAGES: its tmem hits, and the order the host uses for it."""
    host = tmem.Host(room_for(TMEM_PAGES), compress=None, dedup=None, order=order)
    client = host.connect("vm")
    pool = client.new_pool()
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for page in refs:
        if page in cache:
            cache.move_to_end(page)
            continue
        hits += client.get_page(pool, 1, page) is not None
        cache[page] = None
        if len(cache) > PRIVATE_PAGES:
            client.put_page(pool, 1, cache.popitem(last=False)[0], PAGE)
    return hits, client.stats()["insertion"]


def test_a_loop_longer_than_the_memory_keeps_a_part_of_it_where_lru_keeps_nothing():
    loop = 2 * (PRIVATE_PAGES + TMEM_PAGES)
    refs = [page for _ in range(20) for page in range(loop)]
    lru_hits, _ = replay("lru", refs)
    hits, insertion = replay("adaptive", refs)
    assert lru_hits == 0  # each page is evicted just before the loop comes back to it
    assert insertion == "reuse"
    # Near all that fits: TMEM_PAGES of the loop's pages hit on each round.
    assert hits > 0.7 * 19 * TMEM_PAGES


def test_where_recency_pays_the_adaptive_order_stays_lru():
    rng = random.Random(5)
    # A working set that drifts: most references near the latest ones.
    refs, base = [], 0
    for _ in range(20_000):
        base += rng.random() < 0.05
        refs.append(base + int(rng.expovariate(1 / 60)))
    lru_hits, _ = replay("lru", refs)
    hits, insertion = replay("adaptive", refs)
    assert lru_hits > 1000
    assert insertion == "lru" and hits == lru_hits


def test_the_order_is_chosen_per_host_and_checked():
    assert tmem.Host(1 << 20).stats()["order"] == "adaptive"
    assert tmem.Host(1 << 20, order="lru").stats()["order"] == "lru"
    with pytest.raises(tmem.InvalidArgument, match="order"):
        tmem.Host(1 << 20, order="mru")


def test_shadows_follow_every_handle_on_small_hosts_and_a_power_of_two_share_on_large():
    assert shadow_mask(SHADOW_PAGES) == 0
    assert shadow_mask(SHADOW_PAGES + 1) == 1
    assert shadow_mask(64 * SHADOW_PAGES) == 63
    assert shadow_mask(65 * SHADOW_PAGES) == 127

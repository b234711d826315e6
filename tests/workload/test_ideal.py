"""The simulated ideal against cases worked out by hand."""

from __future__ import annotations

import pytest

from tmem.workload.ideal import GuestRefs, ideal_share, schedule, simulate


def reads(*pages: int, delay: int = 0, writes: tuple[int, ...] = ()) -> GuestRefs:
    return GuestRefs(
        list(pages), [1] * len(pages), [1 if i in writes else 0 for i in range(len(pages))], delay
    )


def test_schedule_takes_turns_in_steps_and_starts_late_guests_late():
    a, b = reads(1, 2, 3, 4), reads(7, 8, delay=2)
    events = list(schedule([a, b], step_pages=2))
    assert events == [
        (0, 1, 1, False), (0, 2, 1, False),                     # step 0: only a
        (0, 3, 1, False), (1, 7, 1, False), (0, 4, 1, False), (1, 8, 1, False),  # step 1
        (0, 0, -1, False), (1, 0, -1, False),                   # both leave after it
    ]  # fmt: skip


def test_global_lru_lends_a_finished_guests_room_to_the_others():
    # Guest 0 reads 1, 2 and leaves; guest 1 loops over 3 pages twice, from step 1.
    g0, g1 = reads(1, 2), reads(1, 2, 3, 1, 2, 3, delay=2)
    # 2 private pages each, no spare: static holds 2 pages of guest 1's loop of 3 -> no hit.
    assert simulate([g0, g1], "cleancache", 2, 0, "static", step_pages=2) == [2, 6]
    # One global LRU of 4 pages: guest 0's pages go with it, the loop of 3 fits.
    assert simulate([g0, g1], "cleancache", 2, 0, "global_lru", step_pages=2) == [2, 3]


def test_victim_cache_holds_what_private_caches_evict_and_gives_it_back_once():
    g = reads(1, 2, 3, 1, 2, 3)
    # 1 private page and a victim cache of 2: every reference after the first three hits.
    assert simulate([g], "cleancache", 1, 2, "victim_lru") == [3]
    # A victim cache of 1 is too small for the loop of 3 (LRU's worst case).
    assert simulate([g], "cleancache", 1, 1, "victim_lru") == [6]
    assert simulate([g], "cleancache", 1, 1, "global_lru") == [6]


def test_frontswap_first_use_is_free_and_writes_count_nothing():
    g = reads(1, 2, 3, 1, writes=(1,))
    assert simulate([g], "frontswap", 2, 0, "static") == [1]  # only page 1 came back
    assert simulate([g], "frontswap", 3, 0, "global_lru") == [0]


def test_cleancache_writes_cache_the_page_and_kill_the_victim_copy():
    # 1 private page, victim of 2: after 2, 1, 3 the victim holds 2 and 1.  Writing 1
    # caches it privately and drops the stale victim copy, so evicting 3 leaves 2 in
    # the victim and reading 2 hits (with the stale copy kept, 2 would be pushed out).
    g = reads(2, 1, 3, 1, 2, writes=(3,))
    assert simulate([g], "cleancache", 1, 2, "victim_lru") == [3]


def test_share_of_the_ideal():
    assert ideal_share(100, 80, 60) == 0.5
    assert ideal_share(100, 50, 60) == pytest.approx(1.25)
    assert ideal_share(100, 110, 60) == -0.25
    assert ideal_share(100, 90, 100) is None

"""The page table's arrays and its LRU lists."""

from __future__ import annotations

from tmem.engine.pages import PageTable


def test_page_ids_are_reused_after_release_and_the_table_grows():
    table = PageTable(initial=4)
    pids = [table.alloc(ref=i, cost=10, pool=1, oid=i, index=i) for i in range(10)]
    assert len(set(pids)) == 10
    assert [table.ref[p] for p in pids] == list(range(10))
    table.release(pids[3])
    assert table.alloc(ref=99, cost=1, pool=1, oid=5, index=5) == pids[3]


def test_lru_list_orders_from_least_to_most_recently_used():
    table = PageTable(initial=2)
    head = table.new_list()
    pids = [table.alloc(i, 0, 0, 0, i) for i in range(5)]
    for pid in pids:
        table.append(head, pid)
    assert table.members(head) == pids
    table.touch(head, pids[0])
    assert table.oldest(head) == pids[1]
    table.unlink(pids[2])
    table.unlink(pids[2])  # unlinking twice is harmless
    assert table.members(head) == [pids[1], pids[3], pids[4], pids[0]]


def test_empty_list_has_no_oldest_page():
    table = PageTable()
    head = table.new_list()
    assert table.oldest(head) == -1
    pid = table.alloc(0, 0, 0, 0, 0)
    table.append(head, pid)
    table.unlink(pid)
    assert table.oldest(head) == -1 and table.members(head) == []


def test_two_lists_are_independent():
    table = PageTable()
    a, b = table.new_list(), table.new_list()
    pa, pb = table.alloc(1, 0, 0, 0, 0), table.alloc(2, 0, 0, 0, 0)
    table.append(a, pa)
    table.append(b, pb)
    assert table.members(a) == [pa] and table.members(b) == [pb]

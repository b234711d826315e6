"""frontswap: every stored page comes back exactly, from tmem or the swap file."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

import tmem
from tests.frontends.conftest import LosableClient
from tmem.frontends import EmptySlot, Frontswap, PagesLost

PS = 4096


def page(slot: int, version: int = 0) -> bytes:
    """A compressible page that names its slot and version."""
    return ((b"slot %08d v%04d " % (slot, version)) * (PS // 20 + 1))[:PS]


def swap_bytes(path: Path, slot: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(slot * PS)
        return f.read(PS)


def test_pages_go_to_tmem_and_come_back(tmp_path: Path, client: Any) -> None:
    with Frontswap(client, tmp_path / "swap", slots=64) as swap:
        for slot in range(64):
            swap.store(slot, page(slot))
        for slot in range(64):
            assert swap.load(slot) == page(slot)
        stats = swap.stats()
    assert stats["succ_stores"] == 64 and stats["failed_stores"] == 0
    assert stats["loads"] == 64 and stats["swap_reads"] == stats["swap_writes"] == 0
    assert stats["tmem_pages"] == 64
    assert client.stats()["pools"] == {}  # the pool went with close


def test_rejected_pages_go_to_the_swap_file(tmp_path: Path) -> None:
    host = tmem.Host(1 << 20)
    client = host.connect("c")
    host.set_client("c", frozen=True)
    path = tmp_path / "swap"
    with Frontswap(client, path, slots=8) as swap:
        for slot in range(8):
            swap.store(slot, page(slot))
        assert swap_bytes(path, 3) == page(3)
        assert [swap.load(s) for s in range(8)] == [page(s) for s in range(8)]
        stats = swap.stats()
    assert stats["failed_stores"] == 8 and stats["swap_writes"] == 8
    assert stats["swap_reads"] == 8 and stats["loads"] == 0 and stats["tmem_pages"] == 0


def test_a_host_that_fills_up_sends_the_rest_to_the_file(tmp_path: Path) -> None:
    host = tmem.Host(16 * PS + 2048, compress=None, dedup=None)
    client = host.connect("c")
    with Frontswap(client, tmp_path / "swap", slots=40, writeback=False) as swap:
        for slot in range(40):
            swap.store(slot, page(slot))
        assert [swap.load(s) for s in range(40)] == [page(s) for s in range(40)]
        stats = swap.stats()
    assert 0 < stats["succ_stores"] < 40
    assert stats["succ_stores"] + stats["failed_stores"] == 40
    assert stats["tmem_pages"] + stats["file_pages"] == 40


def test_a_full_host_keeps_the_newest_pages_by_writing_back_the_oldest(tmp_path: Path) -> None:
    host = tmem.Host(16 * PS + 2048, compress=None, dedup=None)
    client = host.connect("c")
    with Frontswap(client, tmp_path / "swap", slots=40) as swap:
        for slot in range(40):
            swap.store(slot, page(slot))
        swap.store(30, page(30, 1))  # stored again: now the newest
        stats = swap.stats()
        in_tmem = [s for s in range(40) if swap._in_tmem[s]]
        assert [swap.load(s) for s in range(40)] == [
            page(s, 1) if s == 30 else page(s) for s in range(40)
        ]
    held = stats["tmem_pages"]
    assert 0 < held < 40 and stats["failed_stores"] == 0
    assert in_tmem == list(range(40 - held, 40))  # the newest pages stayed in tmem
    assert stats["written_back"] == 40 - held == stats["swap_writes"]


def test_storing_again_replaces_the_page_wherever_it_was(tmp_path: Path, client: Any) -> None:
    with Frontswap(client, tmp_path / "swap", slots=4) as swap:
        swap.store(1, page(1, 0))
        swap.shrink(0)  # now in the file
        swap.store(1, page(1, 1))  # now in tmem
        assert swap.load(1) == page(1, 1)
        swap.shrink(0)
        assert swap.load(1) == page(1, 1)
        swap.store(1, bytearray(page(1, 2)))
        assert swap.load(1) == page(1, 2)


def test_invalidate_frees_a_slot_and_invalidate_area_frees_all(tmp_path: Path, client: Any) -> None:
    with Frontswap(client, tmp_path / "swap", slots=40) as swap:
        for slot in range(40):
            swap.store(slot, page(slot))
        swap.shrink(20)
        swap.invalidate(0)
        swap.invalidate(39)
        for slot in (0, 39):
            with pytest.raises(EmptySlot):
                swap.load(slot)
        assert swap.load(1) == page(1)
        assert swap.stats()["invalidates"] == 2
        assert swap.stats()["tmem_pages"] == client.stats()["pages"] == 19  # 39 left tmem
        swap.invalidate_area()
        for slot in range(40):
            with pytest.raises(EmptySlot):
                swap.load(slot)
        stats = swap.stats()
    assert stats["tmem_pages"] == stats["file_pages"] == 0
    assert client.stats()["pages"] == 0


def test_shrink_moves_pages_to_the_swap_file_down_to_the_target(
    tmp_path: Path, client: Any
) -> None:
    path = tmp_path / "swap"
    with Frontswap(client, path, slots=100) as swap:
        for slot in range(100):
            swap.store(slot, page(slot))
        assert swap.shrink(100) == 0
        assert swap.shrink(30) == 70
        assert swap.stats()["tmem_pages"] == 30
        assert client.stats()["pages"] == 30
        assert swap.shrink(0) == 30
        assert all(swap_bytes(path, s) == page(s) for s in range(100))
        assert [swap.load(s) for s in range(100)] == [page(s) for s in range(100)]
        stats = swap.stats()
    assert stats["shrunk_pages"] == 100 and stats["swap_reads"] == 100


def test_losing_the_host_names_exactly_the_pages_lost(tmp_path: Path, client: Any) -> None:
    losable = LosableClient(client)
    with Frontswap(losable, tmp_path / "swap", slots=20) as swap:
        for slot in range(20):
            swap.store(slot, page(slot))
        swap.shrink(12)  # 8 pages are safe in the file
        safe = [s for s in range(20) if _in_file(swap, s)]
        losable.lose()
        with pytest.raises(PagesLost) as info:
            swap.load(next(s for s in range(20) if s not in safe))
        assert sorted(info.value.slots) == sorted(set(range(20)) - set(safe))
        assert isinstance(info.value, tmem.ConnectionLost)
        for slot in safe:
            assert swap.load(slot) == page(slot)
        lost = swap.lost_slots()
        swap.store(lost[0], page(lost[0], 9))  # goes to the file now
        assert swap.load(lost[0]) == page(lost[0], 9)
        swap.invalidate(lost[1])
        assert swap.lost_slots() == lost[2:]
        assert swap.stats()["lost_pages"] == 10


def _in_file(swap: Frontswap, slot: int) -> bool:
    return swap._in_file[slot]


def test_write_behind_means_losing_the_host_loses_nothing(tmp_path: Path, client: Any) -> None:
    losable = LosableClient(client)
    with Frontswap(losable, tmp_path / "swap", slots=50, write_behind=True) as swap:
        for slot in range(50):
            swap.store(slot, page(slot))
        assert swap.sync(timeout=30)
        assert swap.stats()["written_behind"] == 50
        assert swap.load(7) == page(7)  # still served from tmem
        assert swap.stats()["loads"] == 1
        losable.lose()
        assert [swap.load(s) for s in range(50)] == [page(s) for s in range(50)]
        assert swap.lost_slots() == ()


def test_random_stores_loads_shrinks_and_invalidates_match_a_model(
    tmp_path: Path, harness: Any
) -> None:
    host_client = harness.connect("c")
    rng = random.Random(5)
    model: dict[int, bytes] = {}
    with Frontswap(host_client, tmp_path / "swap", slots=32, write_behind=True) as swap:
        for step in range(600):
            slot = rng.randrange(32)
            op = rng.random()
            if op < 0.45:
                model[slot] = page(slot, step)
                swap.store(slot, model[slot])
            elif op < 0.85:
                if slot in model:
                    assert swap.load(slot) == model[slot]
                else:
                    with pytest.raises(EmptySlot):
                        swap.load(slot)
            elif op < 0.95:
                model.pop(slot, None)
                swap.invalidate(slot)
            else:
                swap.shrink(rng.randrange(16))
        assert swap.sync(timeout=30)
        assert {s: swap.load(s) for s in model} == model


def test_bad_slots_and_pages_raise_tmem_errors(tmp_path: Path) -> None:
    with pytest.raises(tmem.InvalidArgument):
        Frontswap(None, tmp_path / "swap", slots=0)
    with Frontswap(None, tmp_path / "swap", slots=4) as swap:
        for slot in (-1, 4, 1.0, "1", True):
            with pytest.raises(tmem.InvalidArgument):
                swap.store(slot, page(0))  # type: ignore[arg-type]
        for bad in (b"short", page(0) + b"x", 12):
            with pytest.raises(tmem.InvalidArgument):
                swap.store(0, bad)
        with pytest.raises(tmem.InvalidArgument):
            swap.shrink(-1)
        swap.store(0, page(0))
        assert swap.load(0) == page(0)
        assert swap.stats()["failed_stores"] == 0  # no host: nothing was offered
    assert os.path.getsize(tmp_path / "swap") == 4 * PS


class CorruptingClient:
    """A client whose host returns the wrong bytes for the pages of some slots."""

    def __init__(self, client: Any, bad_slots: set[int]) -> None:
        self._client = client
        self.bad = {(slot & 15, slot >> 4) for slot in bad_slots}

    def get_page(self, pool: int, oid: int, index: int) -> bytes | None:
        page = self._client.get_page(pool, oid, index)
        if page is not None and (oid, index) in self.bad:
            return bytes([page[0] ^ 1]) + page[1:]
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_page_tmem_returns_altered_is_never_handed_out(tmp_path: Path, client: Any) -> None:
    bad = {3, 17, 40}
    corrupter = CorruptingClient(client, bad)
    with Frontswap(corrupter, tmp_path / "swap", slots=48) as swap:
        for slot in range(48):
            swap.store(slot, page(slot))
        for slot in range(48):
            if slot in bad:
                with pytest.raises(PagesLost) as info:
                    swap.load(slot)
                assert slot in info.value.slots
            else:
                assert swap.load(slot) == page(slot)
        assert swap.lost_slots() == (3, 17, 40)
        assert swap.stats()["corrupt_pages"] == 3
        assert swap.stats()["tmem_pages"] == 45 == client.stats()["pages"]
        corrupter.bad.discard((17 & 15, 17 >> 4))  # the host mends
        swap.store(17, page(17, 1))  # a lost slot stored again is good again
        swap.shrink(0)  # shrink checks what it moves too
        assert swap.load(17) == page(17, 1)

"""The spill mapping: a dict that spills past its memory limit through frontswap."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import pytest

import tmem
from tests.frontends.conftest import LosableClient
from tmem.frontends import PagesLost, SpillMapping


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_values_past_the_limit_are_spilled_and_come_back_equal(tmp_path: Path, client: Any) -> None:
    values = {f"k{i}": blob(3000 + 1000 * i, i) for i in range(12)}
    with SpillMapping(client, memory_limit=20_000, sizeof=len) as data:
        data.update(values)
        stats = data.stats()
        assert stats["fast_bytes"] <= 20_000
        assert stats["spilled"] > 0 and stats["slow_keys"] > 0
        assert stats["swap"]["succ_stores"] > 0  # tmem took the pages
        assert len(data) == 12 and set(data) == set(values)
        assert "k0" in data and "nope" not in data
        assert data.stats()["unspilled"] == 0  # membership did not load anything
        for key in random.Random(1).sample(sorted(values), 12):
            assert data[key] == values[key]
        assert data.stats()["unspilled"] > 0
        assert data.stats()["fast_bytes"] <= 20_000
        assert dict(data.items()) == values


def test_overwriting_and_deleting_free_the_swap_slots(tmp_path: Path, client: Any) -> None:
    with SpillMapping(client, memory_limit=0, slots=16, sizeof=len) as data:
        for round_ in range(20):  # 20 rounds x 4 pages would not fit without reuse
            data["a"] = blob(4096 * 3, round_)
            data["b"] = blob(100, round_)
            assert data["a"] == blob(4096 * 3, round_)
            del data["b"]
        assert "b" not in data
        with pytest.raises(KeyError):
            del data["b"]
        with pytest.raises(KeyError):
            data["b"]
        pickled = len(pickle.dumps(blob(4096 * 3, 0), protocol=pickle.HIGHEST_PROTOCOL))
        assert data.stats()["swap"]["tmem_pages"] == -(-pickled // 4096)


def test_a_value_that_cannot_be_spilled_stays_in_memory(tmp_path: Path) -> None:
    with SpillMapping(None, memory_limit=10, slots=2, sizeof=lambda v: 100) as data:
        data["lambda"] = lambda: 1  # does not pickle
        data["big"] = blob(3 * 4096, 1)  # needs 3 slots of 2
        data["small"] = b"x"
        assert data["lambda"]() == 1
        assert data["big"] == blob(3 * 4096, 1)
        assert data["small"] == b"x"
        assert data.stats()["spill_failures"] >= 2


def test_evict_spills_the_least_recently_used_value(tmp_path: Path, client: Any) -> None:
    with SpillMapping(client, memory_limit=10_000, sizeof=len) as data:
        data["old"] = blob(1000, 1)
        data["new"] = blob(2000, 2)
        assert data["old"]  # now "new" is the least recently used
        assert data.evict() == 2000
        assert list(data.fast) == ["old"] and list(data.slow) == ["new"]
        assert data.evict() == 1000
        assert data.evict() == -1
        assert data["new"] == blob(2000, 2)


def test_spilled_values_survive_a_host_that_rejects_everything(tmp_path: Path) -> None:
    host = tmem.Host(1 << 20)
    client = host.connect("w")
    host.set_client("w", frozen=True)
    values = {i: blob(5000, i) for i in range(10)}
    with SpillMapping(client, memory_limit=8000, sizeof=len) as data:
        data.update(values)
        assert dict(data) == values
        assert data.stats()["swap"]["failed_stores"] > 0


def test_losing_the_host_is_an_error_not_wrong_data(tmp_path: Path, client: Any) -> None:
    losable = LosableClient(client)
    with SpillMapping(losable, memory_limit=0, sizeof=len) as data:
        data["x"] = blob(5000, 1)
        losable.lose()
        with pytest.raises(PagesLost) as info:
            data["x"]
        assert len(info.value.slots) == 2
        data["y"] = blob(5000, 2)  # new spills go to the swap file
        assert data["y"] == blob(5000, 2)


def test_with_write_behind_losing_the_host_loses_no_value(tmp_path: Path, client: Any) -> None:
    losable = LosableClient(client)
    with SpillMapping(losable, memory_limit=0, sizeof=len, write_behind=True) as data:
        values = {i: blob(7000, i) for i in range(8)}
        data.update(values)
        assert data.swap.sync(timeout=30)
        losable.lose()
        assert dict(data) == values


def test_the_swap_file_made_here_is_removed_on_close(tmp_path: Path) -> None:
    data = SpillMapping(None, memory_limit=0, worker_local_directory=str(tmp_path))
    data["a"] = 1
    assert len(list(tmp_path.iterdir())) == 1
    data.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(tmem.InvalidArgument):
        SpillMapping(None, memory_limit=-1)


def test_custom_serializers_get_exactly_the_bytes_they_made(tmp_path: Path, client: Any) -> None:
    with SpillMapping(client, memory_limit=0, sizeof=len, dumps=bytes, loads=bytes) as data:
        for n in (1, 4095, 4096, 4097, 10_000):
            data[n] = blob(n, n)
        assert all(data[n] == blob(n, n) for n in (1, 4095, 4096, 4097, 10_000))

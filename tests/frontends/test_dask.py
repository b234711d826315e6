"""A dask.distributed computation with its worker's data in the spill mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tmem.frontends import SpillMapping

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

#: Workers and scheduler talk in-process; their HTTP servers listen on loopback only.
LOOPBACK = {"dashboard_address": "127.0.0.1:0", "worker_dashboard_address": "127.0.0.1:0"}


def test_a_dask_worker_computes_right_with_its_data_spilled_through_tmem(
    tmp_path: Path, client: Any
) -> None:
    data = SpillMapping(client, memory_limit=200_000, worker_local_directory=str(tmp_path))
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            **LOOPBACK,
            data=data,
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        x = da.arange(400_000, chunks=20_000)  # 20 chunks of 160 kB
        y = (x * 3 + 1).persist()
        distributed.wait(y)
        assert data.stats()["spilled"] > 0  # most chunks did not fit in 200 kB
        assert data.stats()["swap"]["succ_stores"] > 0
        total = dask_client.compute(y.sum()).result()
        evens = dask_client.compute(y[::2].max()).result()
    n = 400_000
    assert total == 3 * n * (n - 1) // 2 + n
    assert evens == 3 * (n - 2) + 1
    assert data.stats()["unspilled"] > 0
    data.close()


def test_each_worker_builds_its_own_spill_mapping_from_the_tuple_form(client: Any) -> None:
    spec = (SpillMapping, {"client": client, "memory_limit": 100_000})
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            **LOOPBACK,
            data=spec,
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        x = da.ones((300_000,), chunks=10_000)
        assert dask_client.compute((x + x).persist().sum()).result() == 600_000
        workers = list(cluster.workers.values())
        assert all(isinstance(w.data, SpillMapping) for w in workers)
        assert workers[0].data is not workers[1].data
        for w in workers:  # each swap file lies in its worker's local directory
            assert Path(w.data.swap.path).parent == Path(w.local_directory)
        assert sum(w.data.stats()["spilled"] for w in workers) > 0

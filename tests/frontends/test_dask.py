"""A dask.distributed computation with its worker's data in the spill mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tmem.frontends import SpillMapping

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


def test_a_dask_worker_computes_right_with_its_data_spilled_through_tmem(
    tmp_path: Path, client: Any
) -> None:
    data = SpillMapping(client, memory_limit=200_000, worker_local_directory=str(tmp_path))
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address=None,
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

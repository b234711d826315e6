"""Fixtures of the tier tests: hosts whose pages live below RAM, and a real Redis Cluster."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tmem
from tests.rediscluster import LocalCluster
from tmem.api import Admin, Client


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A real Redis Cluster (three primaries, one replica each) shared by the tier tests
    that leave it whole; tests that kill nodes start their own."""
    made = LocalCluster()
    yield made
    made.stop()


class DemotingClient:
    """A client of a host with tiers that demotes every page it can before each call
    that reads or removes pages, so that those calls meet pages in the tier."""

    def __init__(self, host: tmem.Host, client: tmem.HostClient) -> None:
        self._host = host
        self._client = client
        self.name = client.name

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in ("get_page", "get_pages", "flush_page", "flush_object", "destroy_pool", "close"):

            def demoting(*args: Any, **kwargs: Any) -> Any:
                self._host.demote(all_pages=True)
                return attr(*args, **kwargs)

            return demoting
        return attr


class TieredHarness:
    """An embedded host with an SSD tier; every page is demoted before it is read."""

    kind = "ssd-tier"

    def __init__(self, capacity: int, **host_options: Any) -> None:
        self._dir = tempfile.mkdtemp(prefix="tmem-tier-test-")
        tiers = [f"ssd:{self._dir}:16M"]
        self.host = tmem.Host(capacity, tiers=tiers, demote_in_background=False, **host_options)
        self.admin: Admin = self.host

    def connect(self, name: str, weight: int = 1, cap: int | None = None) -> Client:
        return DemotingClient(self.host, self.host.connect(name, weight=weight, cap=cap))  # type: ignore[return-value]

    def close(self) -> None:
        self.host.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def make_host() -> Iterator[Callable[..., object]]:
    """Hosts whose pages are demoted to an SSD tier before every read."""
    made: list[TieredHarness] = []

    def make(capacity: int = 64 << 20, **options: object) -> object:
        harness = TieredHarness(capacity, **options)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()

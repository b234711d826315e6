"""The engine's model test on hosts whose RAM holds a few pages and whose tiers hold the rest.

The same rules and checks as ``tests/engine/test_model.py`` (persistent pages
come back exactly until flushed, ephemeral gets return the last page put or
nothing, get-get, destructive private gets, no client sees another's pages),
with RAM of at most eight pages, a ``demote`` rule that moves every page it
can to the tier, and checks that the charges for tier pages add up.  One
variant runs on the SSD log with two store configurations, one on a real
Redis Cluster.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

import tmem
from tests.engine.test_model import CLIENTS, PAGE, SHARED, EngineModel, ModelPool  # noqa: F401
from tmem.engine import PAGE_METADATA_BYTES

_cluster = None


@pytest.fixture(autouse=True, scope="module")
def _shared_cluster(cluster):
    global _cluster
    _cluster = cluster
    yield
    _cluster = None


class TieredModel(EngineModel):
    tier_kind = "ssd"

    @initialize(capacity=st.integers(0, 8))
    def start(self, capacity: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="tmem-model-")
        if self.tier_kind == "ssd":
            tier = f"ssd:{self.dir}:1M"
        else:
            assert _cluster is not None
            tier = _cluster.spec
        self.host = tmem.Host(
            capacity * (PAGE + PAGE_METADATA_BYTES),
            tiers=[tier],
            demote_in_background=False,
            **self.options,
        )
        self.host.authorize_shared("a", SHARED)
        self.host.authorize_shared("b", SHARED)
        self.clients = {name: self.host.connect(name) for name in CLIENTS}
        self.model = {}
        self.shared_pages = {}

    @rule()
    def demote(self) -> None:
        self.host.demote(all_pages=True)

    @invariant()
    def tier_charges_add_up(self) -> None:
        if not hasattr(self, "host"):
            return
        engine = self.host.engine
        clients = engine.clients.values()
        state = engine.tiering
        assert sum(state.pages) == sum(c.tier_pages for c in clients) >= 0
        assert sum(state.bytes) == sum(c.tier_bytes for c in clients) >= 0

    def teardown(self) -> None:
        if hasattr(self, "host"):
            self.host.close()
            shutil.rmtree(self.dir, ignore_errors=True)


_VARIANTS = [
    ("ssd", {"compress": None}, 60),
    ("ssd", {"compress": "lz4", "dedup": "client"}, 60),
    ("redis", {"compress": "lz4", "dedup": "client"}, 15),
]
for _kind, _options, _examples in _VARIANTS:
    _name = f"TestTieredModel_{_kind}_" + "_".join(f"{k}_{v}" for k, v in _options.items())
    _machine = type(_name, (TieredModel,), {"options": _options, "tier_kind": _kind})
    _machine.TestCase.settings = settings(
        max_examples=_examples,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    globals()[_name] = _machine.TestCase

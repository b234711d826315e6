"""The compressed store behind a real daemon: its defaults, per-client codecs, statistics."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

import tmem
from tests.store.kinds import KINDS, compressed_size, page_of
from tmem.daemon.config import Config
from tmem.daemon.server import Server, run_in_thread


@pytest.fixture
def daemon() -> Iterator[Server]:
    """A daemon built from its default configuration (no host handed in)."""
    folder = tempfile.mkdtemp(prefix="tmem-store-")
    server = Server(Config(socket=os.path.join(folder, "tmem.sock"), capacity=64 << 20))
    thread = run_in_thread(server)
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_daemon_compresses_with_lz4_and_dedups_per_client_by_default(daemon):
    with tmem.admin(daemon.address) as admin, tmem.connect(daemon.address, name="vm1") as vm:
        pool = vm.new_pool(persistent=True)
        for n, kind in enumerate(KINDS):
            assert vm.put_page(pool, 1, n, page_of(kind))
        assert vm.put_page(pool, 2, 0, page_of("text"))  # a duplicate of page (1, 3)
        assert [vm.get_page(pool, 1, n) for n in range(len(KINDS))] == [
            page_of(kind) for kind in KINDS
        ]
        store = admin.stats()["store"]
        assert (store["compress"], store["dedup"]) == ("lz4", "client")
        assert store["dedup_hits"] == 1 and store["same_pages"] == 3
        assert admin.stats()["compression_ratio"] > 1.5


def test_an_administrator_switches_a_clients_codec_over_the_wire(daemon):
    with tmem.admin(daemon.address) as admin, tmem.connect(daemon.address, name="vm1") as vm:
        pool = vm.new_pool(persistent=True)
        assert vm.put_page(pool, 1, 0, page_of("text", seed=1))
        admin.set_client("vm1", compress="zstd")
        assert vm.put_page(pool, 1, 1, page_of("text", seed=2))
        expected = compressed_size("lz4", page_of("text", seed=1)) + compressed_size(
            "zstd", page_of("text", seed=2)
        )
        assert admin.stats()["store"]["compr_data_size"] == expected
        with pytest.raises(tmem.InvalidArgument):
            admin.set_client("vm1", compress="brotli")
        assert vm.get_page(pool, 1, 0) == page_of("text", seed=1)
        assert vm.get_page(pool, 1, 1) == page_of("text", seed=2)

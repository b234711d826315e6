"""``tmem serve --tier``: a real daemon whose pages overflow RAM into an SSD log and a cluster."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

import tmem
from tests.daemon.conftest import wait_for_socket

PAGE = 4096


def page(n: int) -> bytes:
    return random.Random(n).randbytes(PAGE // 2) + bytes(PAGE // 2)


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(*args: str) -> str:
        path = str(tmp_path / f"s{len(procs)}.sock")
        cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", path, *args]
        procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))
        wait_for_socket(path, procs[-1])
        return "unix:" + path

    yield start
    for proc in procs:
        proc.terminate()
        assert proc.wait(60) == 0
        proc.stderr.close()


def put_patiently(client, pool: int, oid: int, index: int, data: bytes) -> bool:
    """Put, giving the daemon's demoter time (up to a minute: a loaded machine may run it
    late) when RAM is full."""
    deadline = time.monotonic() + 60
    while not client.put_page(pool, oid, index, data):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_pages_overflow_ram_into_the_ssd_then_the_cluster_and_come_back(serve, tmp_path, cluster):
    # Given redis first: the SSD tier still sits first, above the network.
    address = serve("--capacity", "256K", "--tier", cluster.spec,
                    "--tier", f"ssd:{tmp_path}:512K")  # fmt: skip
    client = tmem.connect(address, name="vm1")
    admin = tmem.admin(address)
    try:
        pool = client.new_pool(persistent=True)
        for i in range(500):  # about 1 MB compressed: four RAMs
            assert put_patiently(client, pool, 1, i, page(i)), i
        tiers = admin.stats()["tiers"]
        assert [t["tier"] for t in tiers] == ["ssd", "redis"]
        # A page of about 2 KiB compressed takes a whole block of the log (no record
        # straddles two): 512K of SSD hold about a hundred.
        assert tiers[0]["host_pages"] > 50 and tiers[1]["host_pages"] > 100
        assert all(client.get_page(pool, 1, i) == page(i) for i in range(500))
        # The host's thread promotes the pages got from a tier once the gets pause.
        deadline = time.monotonic() + 60
        while (stats := client.stats())["promotions"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats["promotions"] > 0 and stats["tier_failures"] == 0
    finally:
        client.close()
        admin.close()


def test_tiers_come_from_the_settings_file(serve, tmp_path):
    config = tmp_path / "tmem.toml"
    config.write_text(f'capacity = "128K"\ntier = ["ssd:{tmp_path}:1M"]\n')
    address = serve("--config", str(config))
    client = tmem.connect(address, name="vm1")
    admin = tmem.admin(address)
    try:
        pool = client.new_pool(persistent=True)
        for i in range(120):
            assert put_patiently(client, pool, 1, i, page(i)), i
        assert admin.stats()["tiers"][0]["host_pages"] > 30
        assert all(client.get_page(pool, 1, i) == page(i) for i in range(120))
    finally:
        client.close()
        admin.close()


@pytest.mark.parametrize("tier", ["nfs://x", "ssd:/nonexistent/dir/x:1M", "ssd:/tmp:lots"])
def test_a_bad_tier_is_refused_with_a_message(tmp_path, tier):
    run = subprocess.run(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(tmp_path / "s"),
         "--tier", tier],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "tier" in run.stderr and "Traceback" not in run.stderr


def test_tier_metrics_scraped_equal_stats(serve, tmp_path):
    from tests.control.test_metrics import scrape

    address = serve("--capacity", "256K", "--tier", f"ssd:{tmp_path}:4M",
                    "--metrics", "127.0.0.1:0")  # fmt: skip
    client = tmem.connect(address, name="vm1")
    admin = tmem.admin(address)
    try:
        pool = client.new_pool(persistent=True)
        for i in range(300):
            assert put_patiently(client, pool, 1, i, page(i)), i
        assert all(client.get_page(pool, 1, i) == page(i) for i in range(0, 300, 3))
        deadline = time.monotonic() + 60  # promotions finish in the background
        while admin.stats()["tiering"]["promotions"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while True:  # read a quiet host
            before = admin.stats()
            metrics = scrape(before["daemon"]["metrics"])
            after = admin.stats()
            if before["tiering"] == after["tiering"] and before["tiers"] == after["tiers"]:
                break
            assert time.monotonic() < deadline, "the host's tiers never stood still"
            time.sleep(0.05)
        tiering, [ssd], vm1 = after["tiering"], after["tiers"], after["clients"]["vm1"]
        assert tiering["demotions"] > 100 and tiering["promotions"] > 0
        assert vm1["tier_pages"] > 0
        for key in ("demotions", "promotions", "tier_hits", "tier_lost", "tier_failures",
                    "tier_dropped", "demotions_refused", "demotions_stale"):  # fmt: skip
            assert metrics[(f"tmem_{key}_total", ())] == tiering[key], key
        labels = (("kind", "ssd"), ("tier", "0"))
        assert metrics[("tmem_tier_pages", labels)] == ssd["host_pages"] > 0
        assert metrics[("tmem_tier_bytes", labels)] == ssd["host_bytes"] > 0
        assert metrics[("tmem_tier_healthy", labels)] == 1
        daemon = after["daemon"]  # gets of demoted pages were loaded by the fetch workers
        assert metrics[("tmem_daemon_fetches_total", ())] == daemon["fetches"] > 50
        assert metrics[("tmem_daemon_fetches_in_flight", ())] == daemon["fetches_in_flight"] == 0
        assert metrics[("tmem_daemon_fetch_workers", ())] == daemon["fetch_workers"] == 4
        assert metrics[("tmem_tier_fetches_total", labels)] == ssd["fetches"] > 50
        assert metrics[("tmem_tier_load_failures_total", labels)] == ssd["load_failures"] == 0
        assert metrics[("tmem_tier_written_bytes_total", labels)] == ssd["bytes_written"] > 0
        for quantile, key in (("0.5", "fetch_p50_us"), ("0.99", "fetch_p99_us")):
            sample = ("tmem_tier_fetch_seconds", tuple(sorted((*labels, ("quantile", quantile)))))
            assert metrics[sample] == pytest.approx(ssd[key] / 1e6) and ssd[key] > 0
        who = (("client", "vm1"),)
        assert metrics[("tmem_client_tier_pages", who)] == vm1["tier_pages"]
        assert metrics[("tmem_client_tier_bytes", who)] == vm1["tier_bytes"]
        assert metrics[("tmem_client_demotions_total", who)] == vm1["demotions"] > 0
        assert metrics[("tmem_client_promotions_total", who)] == vm1["promotions"]
        assert metrics[("tmem_client_tier_failures_total", who)] == vm1["tier_failures"] == 0
    finally:
        client.close()
        admin.close()

"""The metrics endpoint of a real ``tmem serve``, scraped, against ``tmem list --json``."""

from __future__ import annotations

import random
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import tmem
from tests.control.conftest import tmem_command, tmem_json

PAGE = 4096


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_scraped_metrics_equal_the_listing(serve_process):
    _, address = serve_process(
        "--capacity", "64K", "--metrics", "127.0.0.1:0", "--compress", "none"
    )  # fmt: skip
    client = tmem.connect(address, name="vm1")
    persistent, ephemeral = client.new_pool(persistent=True), client.new_pool()
    pages = [(1, i, random.Random(i).randbytes(PAGE)) for i in range(40)]
    client.put_pages(persistent, pages)  # more than the capacity: some are refused
    client.put_pages(ephemeral, pages[:5])
    client.get_pages(persistent, [(1, i) for i in range(50)])
    doc = tmem_json("list", "--socket", address.removeprefix("unix:"))
    url = doc["daemon"]["metrics"]
    metrics = scrape(url)
    vm1 = doc["clients"]["vm1"]

    def client_metric(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted({"client": "vm1", **labels}.items())))]

    assert vm1["failed_puts"] > 0 and vm1["reject_capacity"] > 0
    assert client_metric("tmem_client_pages") == vm1["pages"]
    assert client_metric("tmem_client_bytes") == vm1["bytes"]
    assert client_metric("tmem_client_puts_total") == vm1["puts"] == 45
    assert client_metric("tmem_client_gets_total") == vm1["gets"] == 50
    assert client_metric("tmem_client_hits_total") == vm1["succ_gets"]
    assert client_metric("tmem_client_evictions_total") == vm1["evictions"]
    for reason in ("capacity", "cap", "frozen", "share", "store"):
        value = client_metric("tmem_client_refused_total", reason=reason)
        assert value == vm1["reject_" + reason]
    for pool_id, pool in vm1["pools"].items():
        kind = "persistent" if pool["persistent"] else "ephemeral"
        labels = {"pool": pool_id, "kind": kind}
        assert client_metric("tmem_pool_pages", **labels) == pool["pages"]
        assert client_metric("tmem_pool_bytes", **labels) == pool["bytes"]
        assert client_metric("tmem_pool_puts_total", **labels) == pool["puts"]
        assert client_metric("tmem_pool_refused_total", **labels) == pool["failed_puts"]
    assert metrics[("tmem_capacity_bytes", ())] == doc["capacity"] == 64 << 10
    assert metrics[("tmem_used_bytes", ())] == doc["bytes"]
    assert metrics[("tmem_pages", ())] == doc["pages"]
    assert metrics[("tmem_compression_ratio", ())] == doc["compression_ratio"]
    assert metrics[("tmem_dedup_ratio", ())] == doc["dedup_ratio"]
    assert metrics[("tmem_connections", ())] == doc["daemon"]["connections"] - 1  # not `list`'s
    puts = metrics[("tmem_request_duration_seconds_count", (("op", "put_pages"),))]
    assert puts >= 2
    everything = (("le", "+Inf"), ("op", "put_pages"))
    assert metrics[("tmem_request_duration_seconds_bucket", everything)] == puts


def test_metrics_are_off_unless_asked_for(serve_process):
    _, address = serve_process("--capacity", "1M")
    assert tmem_json("list", "--socket", address.removeprefix("unix:"))["daemon"]["metrics"] is None
    run = tmem_command("serve", "--socket", "/nonexistent/x.sock", "--metrics", "nohost")
    assert run.returncode != 0 and "nohost" in run.stderr

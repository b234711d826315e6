"""The tmem-balloon configuration: self-ballooning guests and an auto-sized host within
the same memory budget as every other configuration."""

from __future__ import annotations

import pytest

from tests.workload.test_run import GUESTS, expected_pages
from tmem.workload.balloon import parse_spike
from tmem.workload.config import GuestSpec, WorkloadSpec
from tmem.workload.errors import WorkloadError
from tmem.workload.report import summarize
from tmem.workload.runner import run_workload

# The third guest starts late: idle until then, its balloon gives memory to the host.
SPIKE = "8:128K:3"


def spec(scenario: str = "cleancache", **options: object) -> WorkloadSpec:
    values: dict = dict(
        guests=tuple(GuestSpec.parse(g) for g in GUESTS),
        private_pages=64,
        spare_bytes=256 << 10,
        step_pages=128,
        scenario=scenario,
        configurations=("tmem", "tmem-balloon"),
        spike=SPIKE,
    )
    values.update(options)
    return WorkloadSpec(**values)


@pytest.fixture(scope="module")
def ballooned() -> dict:
    return summarize(run_workload(spec()))


def test_every_read_is_accounted_and_right(ballooned: dict) -> None:
    entry = next(e for e in ballooned["configurations"] if e["name"] == "tmem-balloon")
    for text, row in zip(GUESTS, entry["guests"], strict=True):
        reads, _ = expected_pages(text)  # every page read was checked against its contents
        assert row["private_hits"] + row["tmem_hits"] + row["disk_reads"] == reads


def test_the_memory_stays_within_the_budget_and_moves(ballooned: dict) -> None:
    by_name = {e["name"]: e for e in ballooned["configurations"]}
    fixed, moved = by_name["tmem"]["memory"], by_name["tmem-balloon"]["memory"]
    budget = 3 * 64 * 4096 + (256 << 10)
    assert fixed["budget"] == moved["budget"] == budget
    assert fixed["committed_max"] == budget
    assert moved["committed_max"] <= budget
    # the idle guest's balloon gave pages to the host: it grew past its first capacity
    assert moved["host_capacity_max"] > 256 << 10


def test_the_host_gives_back_a_spike_within_its_step(ballooned: dict) -> None:
    moved = next(e for e in ballooned["configurations"] if e["name"] == "tmem-balloon")
    spike = moved["memory"]["spike"]
    assert spike["bytes"] == 128 << 10
    assert spike["wanted"] > 0
    assert spike["freed_in_step"] >= spike["wanted"]
    assert spike["capacity"][1] <= spike["capacity"][0] - spike["wanted"]


def test_unavailable_where_it_cannot_run() -> None:
    swap = summarize(run_workload(spec("frontswap", configurations=("tmem-balloon",))))
    assert "cleancache" in swap["configurations"][0]["unavailable"]
    procs = summarize(run_workload(spec(processes=True, configurations=("tmem-balloon",))))
    assert "threads" in procs["configurations"][0]["unavailable"]


def test_bad_spike() -> None:
    assert parse_spike("3:1M:2") == (3, 1 << 20, 2)
    with pytest.raises(WorkloadError, match="STEP:SIZE:STEPS"):
        parse_spike("soon")

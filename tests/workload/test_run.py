"""A tiny workload end to end: every read is accounted for once, and an empty host changes nothing.

Guests are threads and tmem clients of one embedded host, each replaying a
slice of a shipped trace through the real frontends onto real files.
"""

from __future__ import annotations

import pytest

from tmem.engine import POOL_METADATA_BYTES
from tmem.workload.config import Configuration, GuestSpec, WorkloadSpec
from tmem.workload.content import ContentMap
from tmem.workload.errors import WorkloadError
from tmem.workload.guest import CacheGuest, GuestPages
from tmem.workload.model import make_guest, prepare
from tmem.workload.report import summarize
from tmem.workload.runner import run_configuration, run_workload
from tmem.workload.traces import load_trace

GUESTS = ("lirs-multi1:0:2000", "lirs-sprite:0:2000", "cloudphysics-io:22772:200@512")


def spec(scenario: str, spare: int = 256 << 10, configs=("private", "static", "tmem")):
    return WorkloadSpec(
        guests=tuple(GuestSpec.parse(g) for g in GUESTS),
        private_pages=32,
        spare_bytes=spare,
        step_pages=256,
        scenario=scenario,
        configurations=configs,
    )


def expected_pages(text: str) -> tuple[int, int]:
    """Pages read and pages written by a guest, counted from its trace alone."""
    g = GuestSpec.parse(text)
    trace = load_trace(g.trace).slice(g.start, g.count)
    writes = sum(c for c, w in zip(trace.counts, trace.writes, strict=True) if w)
    return trace.page_accesses - writes, writes


@pytest.fixture(scope="module")
def cleancache():
    return summarize(run_workload(spec("cleancache")))


@pytest.fixture(scope="module")
def frontswap():
    return summarize(run_workload(spec("frontswap")))


def test_every_page_read_is_a_private_hit_a_tmem_hit_or_a_disk_read(cleancache):
    for entry in cleancache["configurations"]:
        for text, row in zip(GUESTS, entry["guests"], strict=True):
            reads, writes = expected_pages(text)
            assert row["reads"] == reads
            assert row["private_hits"] + row["tmem_hits"] + row["disk_reads"] == reads
            assert row["disk_writes"] == writes  # cleancache writes through
        total = entry["total"]
        assert total["disk_reads"] == sum(r["disk_reads"] for r in entry["guests"])


def test_tmem_turns_disk_reads_into_tmem_hits(cleancache):
    by_name = {e["name"]: e for e in cleancache["configurations"]}
    private, tmem = by_name["private"]["total"], by_name["tmem"]["total"]
    assert private["tmem_hits"] == 0
    assert tmem["tmem_hits"] > 0
    assert tmem["private_hits"] == private["private_hits"]  # same private cache size
    assert tmem["disk_reads"] == private["disk_reads"] - tmem["tmem_hits"]
    assert by_name["tmem"]["host"]["capacity"] == 256 << 10
    assert tmem["cpu_us_per_saved_io"] > 0


def test_every_guest_holds_pages_of_the_host_at_some_time(cleancache):
    tmem = next(e for e in cleancache["configurations"] if e["name"] == "tmem")
    samples = tmem["timeline"]["host_bytes"]
    assert len(samples) == len(tmem["timeline"]["accesses"]) == len(tmem["timeline"]["disk_reads"])
    for guest in range(len(GUESTS)):
        assert max(sample[guest] for sample in samples) > 0
    # The late guest holds no page before it starts: at most its pool's record.
    assert samples[0][2] <= POOL_METADATA_BYTES


def test_every_page_reference_is_resident_first_touched_in_tmem_or_read_from_swap(frontswap):
    for entry in frontswap["configurations"]:
        for text, row in zip(GUESTS, entry["guests"], strict=True):
            reads, writes = expected_pages(text)
            assert row["reads"] == reads + writes
            parts = row["private_hits"] + row["first_touches"] + row["tmem_hits"]
            assert parts + row["disk_reads"] == row["reads"]
            assert row["first_touches"] == len(set(_pages(text)))
    tmem = next(e for e in frontswap["configurations"] if e["name"] == "tmem")
    assert tmem["total"]["tmem_hits"] > 0


def _pages(text: str) -> list[int]:
    g = GuestSpec.parse(text)
    return load_trace(g.trace).slice(g.start, g.count).unique_pages()


@pytest.mark.parametrize("scenario", ["cleancache", "frontswap"])
def test_a_host_of_zero_capacity_gives_exactly_the_no_tmem_figures(scenario):
    summary = summarize(run_workload(spec(scenario, spare=0, configs=("private", "tmem"))))
    private, tmem = summary["configurations"]
    assert tmem["host_bytes"] == 0
    for a, b in zip(private["guests"], tmem["guests"], strict=True):
        for key in ("reads", "private_hits", "tmem_hits", "first_touches"):
            assert a[key] == b[key], key
        assert (a["disk_reads"], a["disk_writes"]) == (b["disk_reads"], b["disk_writes"])
    assert tmem["total"]["refused"] > 0  # the host was asked, and said no


def test_a_wrong_page_from_below_stops_the_run(tmp_path):
    layout = GuestPages.of(load_trace("lirs-multi1").slice(0, 50))
    content = ContentMap.build({"lirs-multi1": layout.pages})
    try:
        guest = CacheGuest("g", layout, content, tmp_path / "disk", None, 4)
        with open(tmp_path / "disk", "r+b") as f:  # the disk goes bad behind the cache
            f.write(b"\xff" * 4096 * len(layout.pages))
        with pytest.raises(WorkloadError, match="wrong data"):
            guest.step(50)
        guest.finish()
    finally:
        content.corpus.close()


def test_an_unknown_compressor_is_reported_as_unavailable_not_a_crash(tmp_path):
    prepared = prepare(spec("cleancache"))
    try:
        bogus = Configuration("tmem-bogus", 32, 1 << 20, compress="bogus")
        result = run_configuration(prepared, bogus, tmp_path)
    finally:
        prepared.content.corpus.close()
    assert result.unavailable and "bogus" in result.unavailable
    assert not result.guests


def test_guests_as_processes_of_a_daemon_keep_the_same_books():
    two = WorkloadSpec(
        guests=(GuestSpec.parse(GUESTS[0]), GuestSpec.parse(GUESTS[2])),
        private_pages=32,
        spare_bytes=256 << 10,
        step_pages=256,
        configurations=("private", "tmem"),
        processes=True,
    )
    private, tmem = summarize(run_workload(two))["configurations"]
    for text, a, b in zip((GUESTS[0], GUESTS[2]), private["guests"], tmem["guests"], strict=True):
        reads, _ = expected_pages(text)
        for row in (a, b):
            assert row["private_hits"] + row["tmem_hits"] + row["disk_reads"] == reads
        assert a["private_hits"] == b["private_hits"]
    assert tmem["total"]["tmem_hits"] > 0
    assert tmem["host"]["capacity"] == 256 << 10
    assert max(max(sample) for sample in tmem["timeline"]["host_bytes"]) > 0


def test_dropping_the_swap_copy_on_swap_in_stores_pages_again_and_keeps_the_books():
    from dataclasses import replace

    kept = summarize(run_workload(spec("frontswap", configs=("static",))))
    dropped = summarize(
        run_workload(replace(spec("frontswap", configs=("static",)), swap_cache="drop"))
    )
    keep_row = kept["configurations"][0]["total"]
    drop_row = dropped["configurations"][0]["total"]
    # Same memory, same faults: only the swap writes differ (clean pages are written again).
    assert drop_row["disk_reads"] == keep_row["disk_reads"]
    assert drop_row["disk_writes"] > keep_row["disk_writes"]
    for text, row in zip(GUESTS, dropped["configurations"][0]["guests"], strict=True):
        reads, writes = expected_pages(text)
        parts = row["private_hits"] + row["first_touches"] + row["tmem_hits"]
        assert parts + row["disk_reads"] == row["reads"] == reads + writes


def test_offering_clean_pages_to_tmem_saves_swap_reads_and_swap_io():
    from dataclasses import replace

    one = WorkloadSpec(  # one guest: one thread, the same calls in every run
        guests=(GuestSpec.parse("lirs-multi1:0:3000"),),
        private_pages=32,
        spare_bytes=256 << 10,
        step_pages=256,
        scenario="frontswap",
        configurations=("tmem",),
    )
    kept = summarize(run_workload(replace(one, swap_cache="keep")))["configurations"][0]
    offered = summarize(run_workload(one))["configurations"][0]  # offer: the default
    assert offered["total"]["disk_reads"] < kept["total"]["disk_reads"]
    # A refused offer makes room by moving the oldest page to the swap file, which may
    # write it: fewer reads for a few more writes, and less I/O in all.
    io = {k: r["total"]["disk_reads"] + r["total"]["disk_writes"] for k, r in
          (("kept", kept), ("offered", offered))}  # fmt: skip
    assert io["offered"] < io["kept"]
    reads, writes = expected_pages("lirs-multi1:0:3000")
    row = offered["guests"][0]
    parts = row["private_hits"] + row["first_touches"] + row["tmem_hits"]
    assert parts + row["disk_reads"] == row["reads"] == reads + writes


def test_guests_as_processes_reach_the_host_s_tiers_and_the_tiers_are_released(tmp_path):
    from tmem.workload.processes import run_configuration_processes

    tier_dir = tmp_path / "ssd"
    tier_dir.mkdir()
    two = WorkloadSpec(
        guests=(GuestSpec.parse(GUESTS[0]), GuestSpec.parse(GUESTS[1])),
        private_pages=32,
        spare_bytes=256 << 10,
        step_pages=256,
        processes=True,
    )
    config = Configuration("tmem-quarter+ssd", 32, 64 << 10, tiers=(f"ssd:{tier_dir}:4M",))
    prepared = prepare(two)
    try:
        result = run_configuration_processes(prepared, config, tmp_path)
    finally:
        prepared.content.corpus.close()
    assert not result.unavailable
    assert result.host["demotions"] > 0 and result.host["tier_hits"] > 0
    assert list(tier_dir.iterdir()) == []  # the host was closed: its log is gone


def test_frontswap_writes_back_by_frequency_except_under_tmem_lru(tmp_path):
    prepared = prepare(spec("frontswap", configs=("tmem", "tmem-lru")))
    for config in prepared.spec.chosen():
        guest = make_guest(prepared, config, None, 0, tmp_path)
        try:
            assert guest.swap.eviction == ("lru" if config.name == "tmem-lru" else "frequency")
        finally:
            guest.swap.close()


def test_the_host_s_eviction_runs_in_cleancache_only():
    """tmem-freq orders ephemeral pages: in frontswap it would keep the pages tmem keeps."""
    swap = summarize(run_workload(spec("frontswap", configs=("tmem-freq",))))
    assert "cleancache" in swap["configurations"][0]["unavailable"]
    clean = run_workload(spec("cleancache", configs=("tmem-freq",)))
    assert not clean.results[0].unavailable

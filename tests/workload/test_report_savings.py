"""What a run counts as I/O that tmem saved."""

from __future__ import annotations

from tmem.workload.report import guest_row

SWAP = dict(
    accesses=100,
    faults=30,
    first_touches=10,
    loads=12,
    swap_reads=18,
    swap_writes=25,
    succ_stores=40,
    failed_stores=5,
    tmem_cpu_ns=1000,
    tmem_calls=60,
)


def test_frontswap_pages_moved_on_to_the_swap_file_saved_no_write():
    row = guest_row("frontswap", dict(SWAP, written_back=15, shrunk_pages=5))
    assert row["tmem_saves"] == 12 + 40 - 15 - 5


def test_frontswap_savings_are_loads_and_stores_kept():
    assert guest_row("frontswap", SWAP)["tmem_saves"] == 52


def test_cleancache_savings_are_tmem_hits():
    counters = dict(
        reads=50,
        private_hits=20,
        succ_gets=10,
        disk_reads=20,
        disk_writes=3,
        failed_puts=2,
        tmem_cpu_ns=500,
        tmem_calls=40,
    )
    assert guest_row("cleancache", counters)["tmem_saves"] == 10


def test_savings_are_measured_against_the_private_run_when_it_ran():
    from tmem.workload.report import _derive

    row = guest_row("frontswap", dict(SWAP, written_back=15, shrunk_pages=5))
    baseline = dict(row, disk_reads=30, disk_writes=35)
    derived = _derive(dict(row), None, baseline)
    assert derived["saved_io"] == (30 + 35) - (18 + 25)
    assert derived["cpu_us_per_saved_io"] == 1000 / 1000 / 22
    assert _derive(dict(row), None)["saved_io"] == row["tmem_saves"]


def test_a_configuration_without_tmem_has_no_cpu_figure():
    from tmem.workload.report import _derive

    row = guest_row("frontswap", dict(SWAP, tmem_calls=0, tmem_cpu_ns=0, loads=0, succ_stores=0))
    baseline = dict(row, disk_reads=30, disk_writes=35)
    assert _derive(dict(row), None, baseline)["cpu_us_per_saved_io"] is None

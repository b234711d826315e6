"""Trace readers: LIRS and CloudPhysics formats, the shipped traces, slices and guest specs."""

from __future__ import annotations

import gzip
import io

import pytest

from tmem.workload.config import GuestSpec
from tmem.workload.errors import WorkloadError
from tmem.workload.traces import (
    BUILTIN_TRACES,
    load_trace,
    read_cloudphysics,
    read_lirs,
    traces_dir,
)


def test_lirs_reader_skips_checkpoint_marks_and_reads_pages():
    trace = read_lirs(io.StringIO("5\n*\n7\n\n5\n"), "t")
    assert list(trace.starts) == [5, 7, 5]
    assert list(trace.counts) == [1, 1, 1]
    assert not any(trace.writes)
    assert trace.unique_pages() == [5, 7]


def test_lirs_reader_rejects_a_line_that_is_not_a_block_number():
    with pytest.raises(WorkloadError, match="line 2"):
        read_lirs(io.StringIO("5\nfive\n"), "t")


def test_cloudphysics_requests_touch_every_4k_page_they_overlap():
    text = (
        "version,time,op,size,lbn\n"
        "1,10,28,512,8\n"  # sector 8 = byte 4096: page 1 only
        "1,11,2a,1024,7\n"  # bytes 3584..4607: pages 0 and 1
        "1,12,88,65536,16\n"  # 16 pages from page 2
        "1,13,35,0,0\n"  # SYNCHRONIZE CACHE: not a read or a write, skipped
    )
    trace = read_cloudphysics(io.StringIO(text), "cp")
    assert list(trace.starts) == [1, 0, 2]
    assert list(trace.counts) == [1, 2, 16]
    assert list(trace.writes) == [0, 1, 0]


@pytest.mark.parametrize(
    "text",
    [
        "time,op\n1,28\n",
        "version,time,op,size,lbn\n1,2,28,x,5\n",
        "version,time,op,size,lbn\n1,2,28,0,5\n",
    ],
)
def test_cloudphysics_reader_rejects_malformed_input(text):
    with pytest.raises(WorkloadError):
        read_cloudphysics(io.StringIO(text), "cp")


def test_shipped_traces_are_present_with_their_documented_sizes():
    assert all((traces_dir() / name).is_file() for name in BUILTIN_TRACES.values())
    cp = load_trace("cloudphysics-io")
    assert len(cp) == 113_872
    assert sum(cp.writes) == 66_898
    assert len(load_trace("lirs-2_pools")) == 100_000  # two '*' marks skipped
    assert len(load_trace("lirs-multi1")) == 15_858


def test_a_trace_file_given_by_path_is_read(tmp_path):
    path = tmp_path / "mine.trace.gz"
    with gzip.open(path, "wt") as f:
        f.write("3\n4\n3\n")
    trace = load_trace(str(path))
    assert list(trace.starts) == [3, 4, 3]


def test_unknown_trace_and_bad_slices_are_clear_errors():
    with pytest.raises(WorkloadError, match="no trace"):
        load_trace("no-such-trace")
    trace = load_trace("lirs-multi1")
    assert len(trace.slice(100, 50)) == 50
    assert len(trace.slice(15_850)) == 8
    with pytest.raises(WorkloadError):
        trace.slice(15_858)
    with pytest.raises(WorkloadError):
        trace.slice(-1, 5)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("lirs-sprite", GuestSpec("lirs-sprite")),
        ("lirs-sprite:10", GuestSpec("lirs-sprite", 10)),
        ("lirs-sprite:10:20@300", GuestSpec("lirs-sprite", 10, 20, 300)),
        ("/a:b/t.gz:1:2", GuestSpec("/a:b/t.gz", 1, 2)),
    ],
)
def test_guest_specs_parse_and_print_back(text, spec):
    assert GuestSpec.parse(text) == spec
    assert GuestSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", ":5", "t:1:0", "t@soon"])
def test_bad_guest_specs_are_refused(text):
    with pytest.raises(WorkloadError):
        GuestSpec.parse(text)

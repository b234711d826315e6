"""The real readers of /proc and memory cgroups, against sample files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmem.control.procfs import (
    MachineMemory,
    available_bytes,
    cgroup_chain,
    memory_cgroup_dir,
    parse_cgroup_memory,
    parse_meminfo,
    parse_pressure,
    read_cgroup_memory,
)

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_meminfo_in_bytes() -> None:
    info = parse_meminfo(sample("meminfo"))
    assert info["MemTotal"] == 24683584 * 1024
    assert info["MemAvailable"] == 24009184 * 1024
    assert available_bytes(info) == info["MemAvailable"]


def test_meminfo_without_memavailable_uses_free_plus_cached() -> None:
    info = parse_meminfo(sample("meminfo-old"))
    assert info["HugePages_Total"] == 0  # a count, not kB
    assert available_bytes(info) == (102400 + 204800) * 1024


def test_pressure_lines() -> None:
    p = parse_pressure(sample("pressure-memory"))
    assert (p.some_avg10, p.some_total, p.full_avg10, p.full_total) == (1.53, 2380112, 0.51, 812345)
    only = parse_pressure(sample("pressure-some-only"))
    assert only.full_total is None and only.some_total == 0
    with pytest.raises(ValueError):
        parse_pressure("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def test_cgroup_v1_and_v2_memory() -> None:
    v1 = parse_cgroup_memory(1, "67108864\n", "33554432\n", sample("memory.stat-v1"))
    assert (v1.limit, v1.usage, v1.inactive_file) == (64 << 20, 32 << 20, 1 << 20)
    assert v1.headroom == (64 << 20) - (32 << 20) + (1 << 20)
    unlimited = parse_cgroup_memory(1, "9223372036854771712\n", "1\n", "")
    assert unlimited.limit is None and unlimited.headroom is None
    v2 = parse_cgroup_memory(2, "max\n", "23068672\n", sample("memory.stat-v2"))
    assert v2.limit is None and v2.inactive_file == 1572864
    v2 = parse_cgroup_memory(2, "50331648\n", "60000000\n", sample("memory.stat-v2"))
    assert v2.headroom == 0  # over its limit: nothing left, never negative


def test_finding_the_memory_cgroup() -> None:
    v1 = memory_cgroup_dir(sample("cgroup-v1"), sample("mountinfo-v1"))
    assert v1 == Path("/sys/fs/cgroup/memory/process_api/5e452485ef553ad9ac443977206e7638")
    v2 = memory_cgroup_dir(sample("cgroup-v2"), sample("mountinfo-v2"))
    assert v2 == Path("/sys/fs/cgroup/system.slice/tmem.service")
    assert memory_cgroup_dir(sample("cgroup-v2"), "") is None


def _fake_cgroup(path: Path, limit: str, usage: int, version: int = 1) -> Path:
    path.mkdir(parents=True)
    if version == 1:
        (path / "memory.limit_in_bytes").write_text(limit)
        (path / "memory.usage_in_bytes").write_text(str(usage))
        (path / "memory.stat").write_text(sample("memory.stat-v1"))
    else:
        (path / "memory.max").write_text(limit)
        (path / "memory.current").write_text(str(usage))
        (path / "memory.stat").write_text(sample("memory.stat-v2"))
    return path


def test_machine_memory_reads_files_and_narrows_to_the_cgroup(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(sample("meminfo"))
    pressure = tmp_path / "pressure"
    pressure.write_text(sample("pressure-memory"))
    group = _fake_cgroup(tmp_path / "cg" / "daemon", "134217728\n", 100 << 20)
    now = [100.0]
    source = MachineMemory(str(meminfo), str(pressure), str(group), clock=lambda: now[0])
    first = source.sample()
    assert first.total == 128 << 20
    assert first.available == (128 << 20) - (100 << 20) + (1 << 20)
    # 0.5 s stalled over 2 s since the baseline reading: a quarter of the interval.
    now[0] += 2.0
    pressure.write_text(sample("pressure-memory").replace("total=2380112", "total=2880112"))
    assert source.sample().pressure == pytest.approx(0.25)
    assert "pressure from" in source.describe() and "cg/daemon" in source.describe()


def test_machine_memory_without_psi_says_so(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(sample("meminfo"))
    source = MachineMemory(str(meminfo), str(tmp_path / "no-pressure"), None)
    signal = source.sample()
    assert signal.pressure is None
    assert signal.available == 24009184 * 1024
    assert "PSI not available" in source.describe()
    assert "MemAvailable alone" in source.describe()


def test_cgroup_chain_stops_at_the_mount(tmp_path: Path) -> None:
    parent = _fake_cgroup(tmp_path / "root" / "p", "9223372036854771712\n", 1, 1)
    child = _fake_cgroup(parent / "c", "67108864\n", 1, 1)
    assert cgroup_chain(child) == [child, parent]
    assert read_cgroup_memory(tmp_path) is None


def test_this_machine_can_be_read() -> None:
    source = MachineMemory()
    signal = source.sample()
    assert 0 < signal.available <= signal.total
    if Path("/proc/pressure/memory").exists():
        assert signal.pressure is not None and 0 <= signal.pressure <= 1

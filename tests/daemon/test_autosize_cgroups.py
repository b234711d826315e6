"""End to end on real memory pressure: a ``tmem serve --capacity auto`` daemon, a
self-ballooning guest and a competing process, each in a memory cgroup below one
parent whose limit the competitor would break if the daemon kept its memory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tmem
from tests.daemon.conftest import wait_for_socket
from tmem.workload.cgroups import CgroupUnavailable, MemoryCgroup, command_in
from tmem.workload.pressure import fill_host, parse_steps, write_file

M = 1 << 20
PARENT_LIMIT = 400 * M
FLOOR = 8 * M


@pytest.fixture
def groups() -> Iterator[dict[str, MemoryCgroup]]:
    """A parent cgroup limited to PARENT_LIMIT with daemon, guest and competitor groups."""
    if os.geteuid() != 0:
        pytest.skip("creating memory cgroups needs root")
    made: list[MemoryCgroup] = []
    try:
        parent = MemoryCgroup.create(f"tmem-e2e-{os.getpid()}")
        made.append(parent)
        parent.set_limit(PARENT_LIMIT)
        for name in ("daemon", "guest", "competitor"):
            made.append(MemoryCgroup.create(name, parent))
    except CgroupUnavailable as exc:
        pytest.skip(f"no memory cgroup for the end-to-end run: {exc}")
    try:
        yield {g.path.name: g for g in made[1:]} | {"parent": parent}
    finally:
        for group in reversed(made):
            for pid in group.procs():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            group.remove()


def collect(proc: subprocess.Popen, reports: list[dict]) -> None:
    """Append each JSON line ``proc`` prints to ``reports``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            reports.append(json.loads(line))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_the_host_gives_memory_back_and_nothing_is_oom_killed(
    tmp_path: Path, groups: dict[str, MemoryCgroup]
) -> None:
    sock = str(tmp_path / "d.sock")
    log_path = tmp_path / "daemon.log"
    # The machine's PSI also counts other programs' stalls on this (shared) machine: the
    # test sets its limit high, so that only MemAvailable (the parent cgroup) steers here.
    tunables = (
        "interval=0.2,min_free=0.2,grow_free=0.3,grow_after=1,grow_limit=0.1,grow_share=0.5,"
        "pressure_limit=0.2"
    )
    serve = [sys.executable, "-m", "tmem.cli", "serve", "--socket", sock, "--compress", "none",
             "--capacity", "auto", "--capacity-floor", "8M", "--capacity-ceiling", "192M",
             "--autosize", tunables]  # fmt: skip
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(command_in(groups["daemon"], serve), stderr=log)
    procs = [daemon]
    try:
        wait_for_socket(sock, daemon)
        address = "unix:" + sock
        # The guest reads its file through a self-ballooning cache of 2048 pages.
        data = tmp_path / "guest.data"
        write_file(data, 2048)
        groups["guest"].set_limit(160 * M)
        guest_cmd = [sys.executable, "-m", "tmem.workload.pressure", "guest", "--address",
                     address, "--file", str(data), "--pages", "2048", "--cache-pages", "2048",
                     "--interval", "0.1", "--seconds", "300", "--reserved", str(4 * M)]  # fmt: skip
        guest = subprocess.Popen(
            command_in(groups["guest"], guest_cmd), stdout=subprocess.PIPE, text=True
        )
        procs.append(guest)
        reports: list[dict] = []
        reader = threading.Thread(target=collect, args=(guest, reports), daemon=True)
        reader.start()

        # Phase 1: demand makes the host grow (slowly) toward its ceiling.
        filler = tmem.connect(address, name="filler")
        admin = tmem.admin(address)
        held = fill_host(filler, 150 * M, admin)
        assert held >= 150 * M, f"the host grew only to {held} bytes"
        daemon_rss = rss(daemon.pid)

        # Phase 2: a competitor needs 240 MiB: more than the parent has left.
        competitor = subprocess.run(
            command_in(groups["competitor"], [sys.executable, "-m", "tmem.workload.pressure",
                       "competitor", "--mib", "240", "--step-mib", "8", "--every", "0.1",
                       "--hold", "1"]),  # fmt: skip
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert competitor.returncode == 0, f"the competitor died: {competitor.returncode}"
        assert '"freed": true' in competitor.stdout
        assert rss(daemon.pid) < daemon_rss - 60 * M  # the daemon really let go

        # Phase 3: once the guest's cache is full, its cgroup shrinks below what the
        # cache holds (the cache must give pages to the host), then grows again.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            reports and reports[-1].get("private_pages", 0) >= 1900
        ):
            assert guest.poll() is None, "the guest stopped"
            time.sleep(0.1)
        assert reports[-1]["private_pages"] >= 1900, "the guest's cache never filled"
        stats = groups["guest"]
        target = stats.usage - 6 * M
        assert stats.squeeze(target, timeout=30), f"the guest never fit in {target} bytes"
        shrunk = len(reports)
        smallest = min(r["cache_pages"] for r in reports[:shrunk])
        assert smallest <= 2048 - 1024, f"the guest's cache never shrank ({smallest} pages)"
        stats.set_limit(160 * M)
        deadline = time.monotonic() + 30
        while reports[-1]["cache_pages"] <= smallest and time.monotonic() < deadline:
            assert guest.poll() is None, (
                f"the guest stopped ({guest.returncode}); OOM kills in its group: "
                f"{groups['guest'].oom_kills()}; last reports: {reports[-3:]}"
            )
            time.sleep(0.1)
        guest.terminate()
        guest.wait(30)
        reader.join(30)
        assert not any("error" in r for r in reports), reports[-1]
        assert reports[-1]["cache_pages"] > smallest, (
            f"the guest's cache never grew back: {reports[-3:]}; daemon: "
            + " | ".join(log_path.read_text().splitlines()[-4:])
        )
        assert reports[-1]["succ_gets"] > 0  # pages it gave away came back from the host

        for group in groups.values():
            assert group.oom_kills() == 0, f"the OOM killer struck in {group.path}"
        filler.close()
        admin.close()  # type: ignore[attr-defined]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
    shorts = [s for s in parse_steps(log_path.read_text()) if s["reason"] != "grow"]
    assert shorts, "the host never saw the machine short"
    for step in shorts:
        (held_before, held_after), wanted = step["held"], step["wanted"]
        # within this one step the host freed what was asked (or went to its floor)
        assert held_after <= max(FLOOR, held_before - wanted), step

"""Auto-sizing: the host under simulated pressure, the daemon's loop, the settings."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tmem
from tmem.control import HostLaw, HostTunables, MemorySignal
from tmem.control.signals import ScriptedMemory
from tmem.daemon.autosize import AutoSizer
from tmem.daemon.config import Config
from tmem.daemon.server import Server

M = 1 << 20
PAGE = 4096
TOTAL = 1000 * M


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def page(tag: int) -> bytes:
    return tag.to_bytes(8, "little") * (PAGE // 8)


def fill(client: tmem.api.Client, persistent_pages: int, ephemeral_pages: int) -> tuple[int, int]:
    pers = client.new_pool(persistent=True)
    eph = client.new_pool()
    for i in range(persistent_pages):
        assert client.put_page(pers, 1, i, page(i))
    for i in range(ephemeral_pages):
        assert client.put_page(eph, 2, i, page(10**6 + i))
    return pers, eph


def sizer(host: tmem.Host, signals: list[MemorySignal], **tunables: object) -> AutoSizer:
    law = HostLaw(HostTunables(floor=4 * M).with_values(tunables))
    return AutoSizer(host, law, ScriptedMemory(signals))


def test_a_pressure_spike_frees_the_requested_memory_in_one_step() -> None:
    host = tmem.Host(64 * M, compress=None)
    client = host.connect("vm")
    pers, _ = fill(client, persistent_pages=2048, ephemeral_pages=10240)  # 8 + 40 MiB
    calm, spike = MemorySignal(TOTAL, 500 * M), MemorySignal(TOTAL, 70 * M)
    auto = sizer(host, [calm, spike])
    assert auto.step().reason == "hold"
    before, rss_before = host.stats()["bytes"], rss_anon()
    step = auto.step()
    after = host.stats()["bytes"]
    assert step.reason == "short" and step.wanted == 30 * M
    assert before - after >= step.wanted  # all of it, in this one step
    assert host.capacity == step.capacity and after <= step.capacity
    assert rss_before - rss_anon() >= step.wanted // 2  # the process really gave it back
    assert all(client.get_page(pers, 1, i) == page(i) for i in range(2048))


def test_below_the_persistent_pages_puts_are_refused_and_none_is_dropped() -> None:
    host = tmem.Host(64 * M, compress=None)
    client = host.connect("vm")
    pers, eph = fill(client, persistent_pages=6144, ephemeral_pages=4096)  # 24 + 16 MiB
    auto = sizer(host, [MemorySignal(TOTAL, 0)], floor="8M")
    step = auto.step()
    assert step.capacity == 8 * M
    stats = host.stats()
    assert stats["ephemeral_bytes"] == 0
    assert not client.put_page(pers, 1, 10**5, page(1))
    assert not client.put_page(eph, 2, 10**5, page(2))
    assert all(client.get_page(pers, 1, i) == page(i) for i in range(6144))


def test_grows_back_slowly_once_memory_is_plentiful() -> None:
    host = tmem.Host(4 * M, compress=None)
    client = host.connect("vm")
    _, eph = fill(client, persistent_pages=0, ephemeral_pages=1024)  # the host is full
    auto = sizer(host, [MemorySignal(TOTAL, 600 * M)] * 8, grow_after=2)
    reasons = [auto.step().reason for _ in range(4)]
    assert reasons == ["hold", "hold", "grow", "hold"]  # no demand for more after one step
    assert host.capacity == 4 * M + 20 * M  # at most 2% of the machine per step
    for i in range(1024, 6144):
        client.put_page(eph, 2, i, page(i))
    assert auto.step().reason == "grow"


def test_the_daemon_loop_steps_the_sizer(tmp_path: Path) -> None:
    config = Config(socket=str(tmp_path / "d.sock"), compress=None).with_values(
        {"capacity": "auto", "capacity-floor": "4M", "autosize": ["interval=0.05"]}
    )
    server = Server(config)
    assert server.autosizer is not None and server.host.capacity == 4 * M
    server.autosizer.source = ScriptedMemory(
        [MemorySignal(TOTAL, 600 * M)] * 40 + [MemorySignal(TOTAL, 10 * M)]
    )
    from tmem.daemon.server import run_in_thread

    thread = run_in_thread(server)
    try:
        client = tmem.connect(server.address, name="vm")
        admin = tmem.admin(server.address)
        eph = client.new_pool()
        grown = wait_for(lambda: admin.stats()["capacity"] > 4 * M, fill_pool=(client, eph))
        assert grown, "the loop never grew the host"
        assert wait_for(lambda: admin.stats()["capacity"] == 4 * M), "no back-off"
        client.close()
        admin.close()  # type: ignore[attr-defined]
    finally:
        server.stop()
        thread.join(10)


def wait_for(
    done: Callable[[], bool], timeout: float = 10.0, fill_pool: tuple | None = None
) -> bool:
    deadline, i = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        if done():
            return True
        if fill_pool is not None:
            client, pool = fill_pool
            for _ in range(256):
                client.put_page(pool, 3, i, page(i))
                i += 1
        time.sleep(0.02)
    return False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capacity", "auto", "--autosize", "speed=2"], "unknown tunable 'speed'"),
        (["--capacity", "auto", "--autosize", "backoff"], "is not KEY=VALUE"),
        (["--capacity", "auto", "--capacity-floor", "2G", "--capacity-ceiling", "1G"], "below"),
        (["--capacity-floor", "1M"], "need capacity=auto"),
    ],
)
def test_bad_settings_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(tmp_path / "s"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_settings_from_a_file(tmp_path: Path) -> None:
    from tmem.daemon import config as _config

    path = tmp_path / "tmem.toml"
    path.write_text('capacity = "auto"\ncapacity-floor = "32M"\n[autosize]\ngrow-after = 7\n')
    config = _config.load(str(path))
    assert config.autosize is not None
    assert (config.capacity, config.autosize.floor, config.autosize.grow_after) == (
        32 * M,
        32 * M,
        7,
    )
    assert _config.load(str(path), capacity="1G").autosize is None

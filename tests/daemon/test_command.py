"""``tmem serve`` as users run it: settings from options and TOML, clean stops on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import tmem
from tmem.daemon.config import Config, default_socket, load
from tmem.errors import InvalidArgument


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_stops_the_daemon_cleanly(serve_process, sig, status):
    proc, address = serve_process("--capacity", "16M", "--compress", "none")
    client = tmem.connect(address, name="vm1")
    pool = client.new_pool(persistent=True)
    assert client.put_page(pool, 1, 1, b"z" * 4096)
    proc.send_signal(sig)
    assert proc.wait(60) == status  # Ctrl-C: 130, as shells expect
    assert "stopped" in proc.stderr.read()
    assert not os.path.exists(address.removeprefix("unix:"))
    with pytest.raises(tmem.ConnectionLost):
        client.get_page(pool, 1, 1)


def test_settings_come_from_the_file_and_options_override_them(tmp_path):
    config_file = tmp_path / "tmem.toml"
    config_file.write_text(
        'socket = "/tmp/x.sock"\ncapacity = "2G"\ncompress = "zstd"\n'
        'socket-mode = "0660"\nadmin_uids = [0, 1000]\n'
    )
    config = load(str(config_file), capacity="512M", socket=None)
    assert config.socket == "/tmp/x.sock" and config.capacity == 512 << 20
    assert config.compress == "zstd" and config.socket_mode == 0o660
    assert config.admin_uids == frozenset({0, 1000})
    assert load(None, compress="none").compress is None


@pytest.mark.parametrize(
    "text",
    ["colour = 'blue'\n", "capacity = 'lots'\n", "tcp = 'nohost'\n", "socket-mode = '999'\n", "["],
)
def test_bad_settings_files_are_refused_with_a_message(tmp_path, text):
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text)
    with pytest.raises(InvalidArgument):
        load(str(config_file))


def test_serve_reports_bad_settings_and_exits_non_zero(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(tmp_path / "s"),
         "--capacity", "lots"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "lots" in run.stderr


def test_a_second_daemon_on_the_same_socket_is_refused(serve_process, tmp_path):
    _, address = serve_process("--capacity", "1M")
    run = subprocess.run(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", address.removeprefix("unix:")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "another daemon" in run.stderr
    tmem.admin(address).close()  # the first one still serves


def test_a_stale_socket_left_by_a_dead_daemon_is_replaced(serve_process, tmp_path):
    proc, address = serve_process("--capacity", "1M")
    proc.kill()  # no chance to clean up
    proc.wait(10)
    path = address.removeprefix("unix:")
    assert os.path.exists(path)
    proc2 = subprocess.Popen(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", path, "--capacity", "1M"],
        stderr=subprocess.DEVNULL,
    )
    try:
        from tests.daemon.conftest import wait_for_socket

        wait_for_socket(path, proc2)
    finally:
        proc2.terminate()
        assert proc2.wait(60) == 0


def test_the_default_socket_lives_in_the_runtime_directory(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket() == "/run/user/1000/tmem.sock"
    assert Config().socket == "/run/user/1000/tmem.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket() == "/run/tmem/tmem.sock"


def test_the_host_policy_comes_from_the_settings_and_a_bad_one_stops_the_start(
    start_daemon, tmp_path
):
    assert start_daemon(host_policy="share").host.engine.policy == "share"
    assert start_daemon().host.engine.policy == "utility"
    config_file = tmp_path / "tmem.toml"
    config_file.write_text('host-policy = "lru"\n')
    run = subprocess.run(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(tmp_path / "s"),
         "--config", str(config_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "lru" in run.stderr


def test_the_operator_picks_the_host_policy_and_reserve_by_option_or_file(serve_process, tmp_path):
    _, address = serve_process(
        "--capacity", "1M", "--host-policy", "share", "--host-reserve", "0.25",
        "--host-order", "lru",
    )  # fmt: skip
    with tmem.admin(address) as admin:
        stats = admin.stats()
    assert stats["policy"] == "share" and stats["reserve"] == 0.25 and stats["order"] == "lru"
    config_file = tmp_path / "tmem.toml"
    config_file.write_text('host-policy = "share"\nhost-reserve = 0.75\nhost-order = "lru"\n')
    config = load(str(config_file))
    assert (config.host_policy, config.host_reserve, config.host_order) == ("share", 0.75, "lru")
    assert load(str(config_file), host_policy="utility").host_policy == "utility"
    assert load(str(config_file), host_order="adaptive").host_order == "adaptive"
    assert (Config().host_policy, Config().host_reserve) == ("utility", 0.5)
    assert Config().host_order == "adaptive"
    for text in ('host-policy = "lru"\n', "host-reserve = 2\n", 'host-order = "mru"\n'):
        config_file.write_text(text)
        with pytest.raises(InvalidArgument, match="policy|reserve|order"):
            load(str(config_file))


@pytest.mark.parametrize(
    "option", [("--host-policy", "lru"), ("--host-reserve", "1.5"), ("--host-order", "mru")]
)
def test_serve_refuses_an_unknown_policy_or_reserve(tmp_path, option):
    run = subprocess.run(
        [sys.executable, "-m", "tmem.cli", "serve", "--socket", str(tmp_path / "s"), *option],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and option[0].removeprefix("--") in run.stderr

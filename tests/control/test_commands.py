"""Every administrative command against a real ``tmem serve``, through ``tmem`` itself."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

import tmem
from tests.control.conftest import tmem_command, tmem_json
from tmem.units import format_size

PAGE = 4096


def _page(n: int) -> bytes:
    return n.to_bytes(8, "little") * (PAGE // 8 // 2) + bytes(range(256)) * (PAGE // 2 // 256)


def test_list_shows_clients_pools_counters_and_host_totals(serve_process):
    _, address = serve_process("--capacity", "16M")
    socket = address.removeprefix("unix:")
    client = tmem.connect(address, name="vm1")
    pool = client.new_pool(persistent=True)
    client.put_pages(pool, [(1, i, _page(i)) for i in range(10)])
    assert client.get_page(pool, 1, 3) == _page(3)
    assert client.get_page(pool, 1, 99) is None
    doc = tmem_json("list", "--socket", socket)
    vm1 = doc["clients"]["vm1"]
    assert (vm1["pages"], vm1["puts"], vm1["gets"], vm1["succ_gets"]) == (10, 10, 2, 1)
    assert vm1["pools"][str(pool)]["persistent"] is True and vm1["compress"] == "lz4"
    assert doc["capacity"] == 16 << 20 and doc["daemon"]["version"] == tmem.__version__
    assert doc["daemon"]["connections"] == 2  # the client and the command itself
    run = tmem_command("list", "--socket", socket)
    assert run.returncode == 0, run.stderr
    assert "vm1" in run.stdout and "persistent" in run.stdout and "of 16.0 MiB" in run.stdout


def test_set_freeze_thaw_and_capacity_change_the_running_host(serve_process):
    proc, address = serve_process("--capacity", "16M")
    socket = address.removeprefix("unix:")
    client = tmem.connect(address, name="vm1")
    pool = client.new_pool(persistent=True)
    run = tmem_command("set", "vm1", "weight=3", "cap=64K", "compress=zstd", "--socket", socket)
    assert run.returncode == 0 and "vm1: weight=3 cap=65536 compress=zstd" in run.stdout
    vm1 = tmem_json("list", "--socket", socket)["clients"]["vm1"]
    assert (vm1["weight"], vm1["cap"], vm1["compress"]) == (3, 65536, "zstd")
    assert tmem_command("freeze", "vm1", "--socket", socket).returncode == 0
    assert client.put_page(pool, 1, 0, _page(0)) is False
    assert tmem_command("thaw", "vm1", "--socket", socket).returncode == 0
    assert client.put_page(pool, 1, 0, _page(0)) is True
    assert tmem_command("capacity", "32M", "--socket", socket).returncode == 0
    assert tmem_json("list", "--socket", socket)["capacity"] == 32 << 20
    proc.terminate()
    log = proc.communicate(timeout=60)[1]
    assert "set client 'vm1'" in log and "set the capacity to 33554432" in log
    assert "uid" in log and f"tmem {tmem.__version__} serving" in log


#: Commands with values that make no sense, and the option their message must name.
NONSENSE = [
    (["capacity", "0"], "SIZE"),
    (["capacity", "1000T"], "--force"),
    (["capacity", "lots"], "SIZE"),
    (["set", "vm1", "weight=-1"], "weight"),
    (["set", "vm1", "cap=lots"], "cap"),
    (["set", "vm1", "colour=blue"], "colour"),
    (["auth", "vm1", "not-a-uuid"], "UUID"),
    (["top", "--interval", "0"], "--interval"),
]


def test_values_that_make_no_sense_are_refused_naming_the_option(serve_process):
    _, address = serve_process("--capacity", "16M")
    for args, named in NONSENSE:
        run = tmem_command(*args, "--socket", address.removeprefix("unix:"))
        assert run.returncode == 2 and named in run.stderr, args
    stats = tmem.admin(address).stats()
    assert stats["capacity"] == 16 << 20 and stats["policies"] == {}


def test_auth_revoke_and_auths_manage_shared_pool_rights(serve_process):
    _, address = serve_process("--capacity", "16M")
    socket = address.removeprefix("unix:")
    shared = uuid.uuid4()
    assert tmem_command("auth", "vm1", str(shared), "--socket", socket).returncode == 0
    assert tmem_json("auths", "--socket", socket) == {str(shared): ["vm1"]}
    client = tmem.connect(address, name="vm1")
    client.new_pool(shared=True, uuid=shared)
    run = tmem_command("auths", "--socket", socket)
    assert str(shared) in run.stdout and "vm1" in run.stdout
    assert tmem_command("revoke", "vm1", str(shared), "--socket", socket).returncode == 0
    assert tmem_json("auths", "--socket", socket) == {}
    with pytest.raises(tmem.PermissionDenied):
        client.new_pool(shared=True, uuid=shared)


#: Every administrative command, with valid arguments.
EVERY_COMMAND = [
    ["list"], ["auths"], ["set", "vm1", "weight=2"], ["freeze", "vm1"], ["thaw", "vm1"],
    ["capacity", "8M"], ["auth", "vm1", str(uuid.UUID(int=1))],
    ["revoke", "vm1", str(uuid.UUID(int=1))], ["reload"], ["save", "vm1", "/tmp/never.tmem"],
    ["restore", "/nonexistent.tmem"], ["migrate", "vm1", "--to", "unix:/nonexistent.sock"],
    ["top", "--iterations", "1"],
]  # fmt: skip


def test_every_command_is_refused_to_a_client_identity(foreign_daemon):
    _, socket = foreign_daemon("--capacity", "16M")
    for args in EVERY_COMMAND:
        run = tmem_command(*args, "--socket", socket)
        assert run.returncode == 1 and "refused" in run.stderr, args
        assert "administ" in run.stderr and "Traceback" not in run.stderr, args


def test_top_shows_each_clients_memory_share_and_rates(serve_process):
    _, address = serve_process("--capacity", "16M")
    client = tmem.connect(address, name="vm7")
    pool = client.new_pool(persistent=True)
    client.put_pages(pool, [(1, i, _page(i)) for i in range(20)])
    run = tmem_command("top", "--iterations", "2", "--interval", "0.1", "--sort", "p",
                       "--socket", address.removeprefix("unix:"))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "vm7" in run.stdout and "puts/s ▼" in run.stdout and "memory" in run.stdout
    held = client.stats()["bytes"]  # 20 pages of half zeros and a repeated word, lz4
    assert held < 20 * 4096 // 4 and format_size(held) in run.stdout


def test_a_cap_survives_reconnect_and_restart_from_the_config_file(serve_process, tmp_path):
    config = tmp_path / "tmem.toml"
    config.write_text('capacity = "16M"\ncompress = "none"\n[clients.vm1]\ncap = "8K"\n')
    proc, address = serve_process("--config", str(config))
    for _ in range(2):  # connect, reconnect
        client = tmem.connect(address, name="vm1")
        pool = client.new_pool(persistent=True)
        stored = [client.put_page(pool, 1, i, _page(i)) for i in range(4)]
        assert stored == [True, False, False, False] and client.stats()["cap"] == 8192
        client.close()
    proc.terminate()
    assert proc.wait(60) == 0
    _, address = serve_process("--config", str(config))  # a new daemon, on a new socket
    client = tmem.connect(address, name="vm1")
    assert client.stats()["cap"] == 8192


def test_sighup_and_reload_apply_the_edited_config_file(serve_process, tmp_path):
    config = tmp_path / "tmem.toml"
    config.write_text('capacity = "16M"\n[clients.vm1]\nweight = 2\n')
    proc, address = serve_process("--config", str(config))
    admin = tmem.admin(address)
    assert admin.stats()["policies"]["vm1"]["weight"] == 2
    config.write_text('capacity = "24M"\n[clients.vm1]\nweight = 5\nfrozen = true\n')
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while admin.stats()["policies"]["vm1"]["weight"] != 5:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.05)
    assert admin.stats()["capacity"] == 24 << 20
    client = tmem.connect(address, name="vm1")
    assert client.put_page(client.new_pool(), 1, 0, _page(0)) is False  # frozen by the file
    config.write_text('capacity = "24M"\n[clients.vm2]\ncap = "1M"\n')
    run = tmem_command("reload", "--socket", address.removeprefix("unix:"))
    assert run.returncode == 0 and "vm2" in run.stdout
    policies = admin.stats()["policies"]
    assert "vm1" not in policies and policies["vm2"]["cap"] == 1 << 20
    config.write_text("capacity = 'lots'\n")
    run = tmem_command("reload", "--socket", address.removeprefix("unix:"))
    assert run.returncode == 1 and "lots" in run.stderr
    assert admin.stats()["policies"]["vm2"]["cap"] == 1 << 20  # a bad file changes nothing

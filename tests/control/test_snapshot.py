"""Save and restore against real ``tmem serve`` daemons, through ``tmem save`` and ``restore``."""

from __future__ import annotations

import random
import signal

import pytest

import tmem
from tests.control.conftest import tmem_command

PAGE = 4096


def _pages(n: int, seed: int = 0) -> dict[tuple[int, int], bytes]:
    """Pages of three kinds: incompressible, half zeros, one word repeated."""
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        kind = i % 3
        if kind == 0:
            data = rng.randbytes(PAGE)
        elif kind == 1:
            data = rng.randbytes(PAGE // 2) + bytes(PAGE // 2)
        else:
            data = rng.randbytes(8) * (PAGE // 8)
        out[(i % 7, i)] = data
    return out


def _fill(address: str, name: str, pages: dict[tuple[int, int], bytes]) -> tmem.RemoteClient:
    """A client with an ephemeral pool and a persistent pool of ``pages``, still connected."""
    client = tmem.connect(address, name=name)
    ephemeral = client.new_pool()
    persistent = client.new_pool(persistent=True)
    assert all(client.put_pages(persistent, [(o, i, d) for (o, i), d in pages.items()]))
    client.put_pages(ephemeral, [(1, i, b"e" * PAGE) for i in range(10)])
    return client


def _socket(address: str) -> str:
    return address.removeprefix("unix:")


@pytest.mark.parametrize(("saved_by", "restored_by"), [("lz4", "zstd"), ("zstd", "none"),
                                                       ("none", "lz4")])  # fmt: skip
def test_save_and_restore_keep_every_persistent_page_byte_exact(
    serve_process, tmp_path, saved_by, restored_by
):
    _, first = serve_process("--capacity", "32M", "--compress", saved_by)
    _, second = serve_process("--capacity", "32M", "--compress", restored_by)
    pages = _pages(300)
    client = tmem.connect(first, name="vm1")
    ephemeral = client.new_pool()
    persistent = client.new_pool(persistent=True)
    assert all(client.put_pages(persistent, [(o, i, d) for (o, i), d in pages.items()]))
    client.put_pages(ephemeral, [(1, i, b"e" * PAGE) for i in range(10)])
    saved = tmp_path / "vm1.tmem"
    run = tmem_command("save", "vm1", str(saved), "--socket", _socket(first))
    assert run.returncode == 0 and "300 pages" in run.stdout, run.stderr
    client.close()
    run = tmem_command("restore", str(saved), "--socket", _socket(second))
    assert run.returncode == 0 and "300 pages" in run.stdout, run.stderr
    back = tmem.connect(second, name="vm1")
    assert back.get_pages(persistent, list(pages)) == list(pages.values())
    assert back.get_page(ephemeral, 1, 0) is None  # ephemeral pages are not saved
    assert back.new_pool() == persistent + 1  # pool ids go on where they were
    run = tmem_command("restore", str(saved), "--as", "vm2", "--socket", _socket(second))
    assert run.returncode == 0, run.stderr
    other = tmem.connect(second, name="vm2")
    assert other.get_page(persistent, 3, 3) == pages[(3, 3)]


def _damaged(good: bytes, how: str) -> bytes:
    if how == "flipped":
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x01
        return bytes(bad)
    if how == "truncated":
        return good[: len(good) * 2 // 3]
    if how == "no trailer":
        return good[:-10]
    if how == "foreign":
        return b"PK\x03\x04" + good[4:]
    if how == "version":
        return good[:8] + (99).to_bytes(4, "little") + good[12:]
    raise AssertionError(how)


def test_a_damaged_truncated_or_foreign_file_is_refused_and_changes_nothing(
    serve_process, tmp_path
):
    _, first = serve_process("--capacity", "32M")
    _, second = serve_process("--capacity", "32M")
    client = _fill(first, "vm1", _pages(60))  # noqa: F841  (connected while saved)
    good = tmp_path / "good.tmem"
    assert tmem_command("save", "vm1", str(good), "--socket", _socket(first)).returncode == 0
    for how in ("flipped", "truncated", "no trailer", "foreign", "version"):
        bad = tmp_path / "bad.tmem"
        bad.write_bytes(_damaged(good.read_bytes(), how))
        run = tmem_command("restore", str(bad), "--socket", _socket(second))
        assert run.returncode == 1 and "bad.tmem" in run.stderr, how
        assert "Traceback" not in run.stderr
        after = tmem.admin(second).stats()
        assert (after["pages"], after["clients"], after["parked"]) == (0, {}, []), how
    assert tmem_command("restore", str(good), "--socket", _socket(second)).returncode == 0


def test_a_restore_the_host_cannot_hold_is_undone(serve_process, tmp_path):
    _, first = serve_process("--capacity", "32M", "--compress", "none")
    _, small = serve_process("--capacity", "64K", "--compress", "none")
    client = _fill(first, "vm1", _pages(60))  # noqa: F841  (connected while saved)
    saved = tmp_path / "vm1.tmem"
    assert tmem_command("save", "vm1", str(saved), "--socket", _socket(first)).returncode == 0
    run = tmem_command("restore", str(saved), "--socket", _socket(small))
    assert run.returncode == 1 and "refused" in run.stderr
    stats = tmem.admin(small).stats()
    assert (stats["pages"], stats["clients"], stats["parked"]) == (0, {}, [])


def test_a_restart_with_a_state_dir_keeps_every_persistent_page_and_the_cap(
    serve_process, tmp_path
):
    state = tmp_path / "state"
    proc, address = serve_process("--capacity", "32M", "--state-dir", str(state))
    pages = _pages(200)
    first = tmem.connect(address, name="vm1")
    persistent = first.new_pool(persistent=True)
    first.put_pages(persistent, [(o, i, d) for (o, i), d in list(pages.items())[:150]])
    client = tmem.connect(address, name="vm2")  # both still connected at the stop
    pool = client.new_pool(persistent=True)
    client.put_pages(pool, [(o, i, d) for (o, i), d in pages.items()])
    assert tmem_command("set", "vm2", "cap=4M", "--socket", _socket(address)).returncode == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    proc, address = serve_process("--capacity", "32M", "--state-dir", str(state))
    first = tmem.connect(address, name="vm1")
    assert first.get_pages(persistent, [k for k in list(pages)[:150]]) == list(pages.values())[:150]
    again = tmem.connect(address, name="vm2")
    assert again.get_pages(pool, list(pages)) == list(pages.values())
    assert again.stats()["cap"] == 4 << 20
    # the state files were used up: a crash now cannot bring back stale pages
    again.put_page(pool, 0, 0, b"n" * PAGE)
    proc.kill()
    proc.wait(10)
    _, address = serve_process("--capacity", "32M", "--state-dir", str(state))
    fresh = tmem.connect(address, name="vm2")
    with pytest.raises(tmem.NoSuchPool):
        fresh.get_page(pool, 0, 0)

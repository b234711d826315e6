"""Frames a hostile or careless peer sends: the daemon refuses what breaks the
protocol, answers what a half-closed peer already asked, fails whole batches
once, and survives a fault of its own."""

from __future__ import annotations

import json
import socket

import pytest

import tmem
import tmem.engine.core
from tmem.wire import HEADER, Op, encode_frame
from tmem.wire import messages as msg

from .hostile import frames_until_closed, page, raw


@pytest.mark.parametrize(
    "bad",
    [
        HEADER.pack(Op.GET, 1, 0, msg.HANDLE.size) + msg.HANDLE.pack(0, bytes(24), 0),  # status 1
        encode_frame(Op.STATS, b"{}"),  # STATS carries no body
        encode_frame(Op.BYE, b"x"),  # nor does BYE
    ],
)
def test_requests_with_a_status_or_a_body_where_none_belongs_are_refused(daemon, bad):
    sock = raw(daemon.address)
    sock.sendall(msg.encode_hello("vm1") + bad)
    frames = frames_until_closed(sock)
    assert frames[0][:2] == (Op.HELLO, 0)
    assert frames[-1][1] == tmem.ProtocolError.code and len(frames) == 2


def test_a_hello_frame_longer_than_any_hello_is_refused_at_its_header(daemon):
    sock = raw(daemon.address)
    sock.sendall(HEADER.pack(Op.HELLO, 0, 0, msg.MAX_HELLO_BODY + 1))  # and no body at all
    frames = frames_until_closed(sock)
    assert [f[1] for f in frames] == [tmem.ProtocolError.code]


def test_a_peer_that_shuts_its_sending_side_gets_every_reply(daemon):
    sock = raw(daemon.address)
    requests = [msg.encode_hello("half"), msg.encode_new_pool(True, False, None, 65536)]
    requests.append(msg.encode_put(0, 1, 1, page(7, 65536)))
    requests += [msg.encode_handle_op(Op.GET, 0, 1, 1)] * 300  # 19 MiB of replies
    sock.sendall(b"".join(requests))
    sock.shutdown(socket.SHUT_WR)
    frames = frames_until_closed(sock)
    assert len(frames) == 303
    assert all(f[:2] == (Op.GET, 0) and f[2] == page(7, 65536) for f in frames[3:])


def test_frozen_must_be_a_bool(daemon):
    client = tmem.connect(daemon.address, name="vm1")
    admin = tmem.admin(daemon.address)
    for value in ("yes", 1, "false"):
        with pytest.raises(tmem.InvalidArgument):
            admin.set_client("vm1", frozen=value)
    assert admin.stats()["clients"]["vm1"]["frozen"] is False
    client.close()
    host = tmem.Host(1 << 20)
    host.connect("vm2")
    with pytest.raises(tmem.InvalidArgument):
        host.set_client("vm2", frozen="yes")


def test_a_batch_on_an_unknown_pool_fails_once_not_once_per_item(daemon, monkeypatch):
    made = []
    real = tmem.engine.core.no_such_pool

    def counting(client, pool_id):
        made.append(pool_id)
        return real(client, pool_id)

    monkeypatch.setattr(tmem.engine.core, "no_such_pool", counting)
    client = tmem.connect(daemon.address, name="vm1")
    items = [(i, 0, page(i)) for i in range(1000)]
    results = client.put_pages(77, items, errors="return")
    assert len(results) == 1000 and all(isinstance(r, tmem.NoSuchPool) for r in results)
    got = client.get_pages(77, [(i, 0) for i in range(1000)], errors="return")
    assert all(isinstance(r, tmem.NoSuchPool) for r in got)
    assert len(made) <= 10  # one error per frame of the batch (8 here), not one per item
    pool = client.new_pool(page_size=512)
    wrong = client.put_pages(pool, items[:100], errors="return")  # 4 KiB pages, 512-byte pool
    assert all(isinstance(r, tmem.InvalidArgument) for r in wrong)
    assert client.put_pages(pool, [(1, 1, page(1, 512))]) == [True]


def test_an_internal_fault_closes_only_its_connection(daemon, monkeypatch):
    good = tmem.connect(daemon.address, name="good")
    pool = good.new_pool(persistent=True)
    victim = tmem.connect(daemon.address, name="victim")

    dumps = json.dumps

    def broken(value, *args, **kwargs):  # fails on a client's statistics (the victim's)
        if isinstance(value, dict) and "succ_puts" in value:
            raise RuntimeError("a bug in the host")
        return dumps(value, *args, **kwargs)

    # (the host's classes are compiled and cannot be patched: the fault is put in
    # the reply's encoding, the same request's handling in the daemon's thread)
    monkeypatch.setattr(json, "dumps", broken)
    with pytest.raises(tmem.TmemError) as caught:
        victim.stats()
    assert type(caught.value) is tmem.TmemError and "internal error" in str(caught.value)
    with pytest.raises(tmem.ConnectionLost):
        victim.new_pool()  # its connection was closed
    monkeypatch.undo()
    assert good.put_page(pool, 1, 1, page(1)) and good.get_page(pool, 1, 1) == page(1)
    assert good.stats()["succ_puts"] == 1

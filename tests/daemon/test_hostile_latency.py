"""Large batches do not keep a real ``tmem serve`` from its other clients: they are
executed a slice at a time, and a well-behaved client is answered in between."""

from __future__ import annotations

import select
import socket

import tmem
from tmem.wire import DEFAULT_MAX_BODY, Decoder, Op
from tmem.wire import messages as msg

from .hostile import page, raw

SMALL = 512
#: The most 512-byte puts one frame holds (about 4 MiB of pages).
COUNT = (DEFAULT_MAX_BODY - msg.BATCH.size) // (msg.ITEM.size + SMALL)


def _reply(sock: socket.socket, decoder: Decoder) -> tuple[int, int, bytes]:
    """The next reply frame on ``sock``."""
    while (frame := decoder.next_frame()) is None:
        decoder.received(sock.recv_into(decoder.recv_buffer()))
    return frame[0], frame[1], bytes(frame[3])


def test_a_client_is_answered_while_another_runs_maximum_size_batches(serve_process):
    _, address = serve_process("--capacity", "64M", "--compress", "none")
    good = tmem.connect(address, name="good")
    pool = good.new_pool(persistent=True)
    flood, decoder = raw(address, timeout=120), Decoder()
    flood.sendall(msg.encode_hello("flood") + msg.encode_new_pool(True, False, None, SMALL))
    assert [_reply(flood, decoder)[:2] for _ in range(2)] == [(Op.HELLO, 0), (Op.NEW_POOL, 0)]
    items = [(n, 0, n.to_bytes(8, "little") * (SMALL // 8)) for n in range(COUNT)]
    requests = {
        Op.PUT_PAGES: b"".join(msg.encode_put_pages(0, SMALL, items)),
        Op.GET_PAGES: msg.encode_get_pages(0, [(n, 0) for n in range(COUNT)]),
    }
    trips = 0
    for op, request in requests.items():
        flood.sendall(request)  # 7,888 items: a tenth of a second or more of work
        during = 0  # round trips answered before the batch's reply came
        while not select.select([flood], [], [], 0)[0] and during < 2000:
            if during % 2 == 0:
                trips += 1
                assert good.put_page(pool, 1, trips, page(trips))
            else:
                assert good.get_page(pool, 1, trips) == page(trips)
            during += 1
        # Run whole, the batch would hold the daemon's one thread until it is done:
        # the first round trip would come back after the batch's reply (during == 1).
        # Sliced, a loaded machine still answers 8 or more.
        assert during >= 3, f"{during} round trips while a batch of {COUNT} ran"
        got, status, body = _reply(flood, decoder)
        results, message, data = msg.decode_batch_reply(memoryview(body), COUNT)
        assert (got, status, message) == (op, 0, "")
        assert results == bytes([msg.ITEM_YES]) * COUNT  # executed in slices, all of it
    assert bytes(data) == b"".join(data for _, _, data in items)  # every page, in order
    assert good.get_pages(pool, [(1, i) for i in range(1, 3)]) == [page(i) for i in range(1, 3)]
    flood.close()

"""Many client processes at one ``tmem serve``: every accepted persistent page survives."""

from __future__ import annotations

import multiprocessing as mp
import random

import tmem

CLIENTS = 16
OPS = 400
PAGE = 1024


def content(worker: int, oid: int, index: int, version: int) -> bytes:
    seed = f"{worker}/{oid}/{index}/{version}".encode()
    return (seed * (PAGE // len(seed) + 1))[:PAGE]


def worker(address: str, number: int, barrier, results) -> None:
    """Random puts, gets, flushes and batches; then, once all are done, check every page."""
    try:
        rng = random.Random(number)
        client = tmem.connect(address, name=f"w{number}", timeout=60)
        pool = client.new_pool(persistent=True, page_size=PAGE)
        cache = client.new_pool(page_size=PAGE)
        model: dict[tuple[int, int], bytes] = {}  # what the daemon must hold
        for step in range(OPS):
            oid, index = rng.randrange(4), rng.randrange(32)
            roll = rng.random()
            if roll < 0.45:
                data = content(number, oid, index, step)
                if client.put_page(pool, oid, index, data):
                    model[oid, index] = data
                else:
                    model.pop((oid, index), None)  # a refused duplicate flushes the old
                client.put_page(cache, oid, index, data)
            elif roll < 0.75:
                assert client.get_page(pool, oid, index) == model.get((oid, index))
                got = client.get_page(cache, oid, index)
                assert got is None or got.startswith(f"{number}/{oid}/{index}/".encode())
            elif roll < 0.85:
                client.flush_page(pool, oid, index)
                model.pop((oid, index), None)
            elif roll < 0.9:
                client.flush_object(pool, oid)
                model = {k: v for k, v in model.items() if k[0] != oid}
            else:
                items = [(oid, i, content(number, oid, i, step)) for i in range(8)]
                for (o, i, data), ok in zip(items, client.put_pages(pool, items), strict=True):
                    if ok:
                        model[o, i] = data
                    else:
                        model.pop((o, i), None)
        barrier.wait(timeout=120)  # everyone has finished writing before anyone checks
        keys = sorted(model)
        got = client.get_pages(pool, keys)
        bad = sum(g != model[k] for g, k in zip(got, keys, strict=True))
        results.put((number, len(keys), bad, client.stats()["succ_puts"]))
        client.close()
    except BaseException as exc:
        results.put((number, -1, repr(exc), 0))
        raise


def test_sixteen_processes_lose_no_accepted_persistent_page(serve_process):
    proc, address = serve_process("--capacity", "256M", "--compress", "lz4")
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(CLIENTS), ctx.Queue()
    workers = [
        ctx.Process(target=worker, args=(address, n, barrier, results)) for n in range(CLIENTS)
    ]
    for w in workers:
        w.start()
    reports = [results.get(timeout=180) for _ in workers]
    for w in workers:
        w.join(30)
    assert all(n_pages >= 0 and bad == 0 for _, n_pages, bad, _ in reports), reports
    assert sum(n_pages for _, n_pages, _, _ in reports) > CLIENTS * 20  # real pages checked
    admin = tmem.admin(address)
    stats = admin.stats()
    assert stats["pages"] == 0 and stats["clients"] == {}  # all released at close
    assert stats["succ_puts"] == sum(r[3] for r in reports)
    assert proc.poll() is None

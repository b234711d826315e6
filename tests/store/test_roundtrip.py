"""Every kind of page, through every codec, dedup scope and pool kind, comes back byte-exact."""

from __future__ import annotations

import uuid

import pytest

import tmem
from tests.store.kinds import KINDS, SAME_FILLED, compressed_size, page_of

CODECS = (None, "lz4", "zstd")
SCOPES = (None, "client", "host")
POOL_KINDS = ("persistent", "ephemeral", "shared")


def _pool(host: tmem.Host, client: tmem.HostClient, kind: str, page_size: int) -> int:
    if kind == "shared":
        shared = uuid.uuid4()
        host.authorize_shared(client.name, shared)
        return client.new_pool(shared=True, uuid=shared, page_size=page_size)
    return client.new_pool(persistent=kind == "persistent", page_size=page_size)


@pytest.mark.parametrize("dedup", SCOPES)
@pytest.mark.parametrize("compress", CODECS)
@pytest.mark.parametrize("pool_kind", POOL_KINDS)
def test_every_kind_of_page_round_trips_exactly(compress, dedup, pool_kind):
    host = tmem.Host(64 << 20, compress=compress, dedup=dedup)
    client = host.connect("vm1")
    for page_size in (512, 4096, 65536):
        pool = _pool(host, client, pool_kind, page_size)
        stored = {}
        for n, kind in enumerate(KINDS):
            for seed in range(3):
                data = page_of(kind, page_size, seed)
                if client.put_page(pool, n, seed, data):
                    stored[n, seed] = data
                else:  # only an ephemeral page that compresses poorly may be refused
                    assert pool_kind != "persistent" and compress
                    assert kind not in SAME_FILLED and compressed_size(compress, data) > 0.75 * len(
                        data
                    )
        if pool_kind == "persistent" or not compress:
            assert len(stored) == len(KINDS) * 3
        for (n, seed), data in stored.items():
            assert client.get_page(pool, n, seed) == data
    rejected = client.stats()["reject_store"]
    assert host.stats()["store"].get("reject_compress_poor", 0) == rejected


@pytest.mark.parametrize("compress", ("lz4", "zstd"))
def test_a_page_put_as_a_memoryview_or_bytearray_is_copied(compress):
    host = tmem.Host(1 << 20, compress=compress)
    client = host.connect("vm1")
    pool = client.new_pool(persistent=True)
    buf = bytearray(page_of("text"))
    assert client.put_page(pool, 1, 0, buf)
    assert client.put_page(pool, 1, 1, memoryview(buf))
    buf[:4] = b"XXXX"
    assert client.get_page(pool, 1, 0) == client.get_page(pool, 1, 1) == page_of("text")


def test_compression_holds_text_in_less_memory_than_raw():
    sizes = {}
    for compress in CODECS:
        host = tmem.Host(64 << 20, compress=compress, dedup=None)
        client = host.connect("vm1")
        pool = client.new_pool(persistent=True)
        for i in range(64):
            assert client.put_page(pool, 1, i, page_of("text", seed=i))
        sizes[compress] = host.stats()["bytes"]
    assert sizes["zstd"] < sizes["lz4"] < 0.8 * sizes[None]

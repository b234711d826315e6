"""Admission: poorly compressible pages, the mean-size cap, same-filled pages, raw clients."""

from __future__ import annotations

import pytest

import tmem
from tests.store.kinds import compressed_size, page_of
from tmem.store import REJECTED, CompressedStore, RamStore, make_store
from tmem.store.zspool import OWNER_BYTES


def test_poorly_compressible_ephemeral_page_is_kept_raw_and_marked_poor():
    store = CompressedStore("lz4")
    data = page_of("random")
    ref = store.put(data, False, 0)
    assert ref >= 0 and store.get(ref) == data and store.poor(ref)
    assert store.stats()["huge_pages"] == 1 and store.stats()["reject_compress_poor"] == 0
    assert not store.poor(store.put(page_of("text"), False, 0))
    store.refuse(ref)  # the engine's call when the page would displace better ones
    stats = store.stats()
    assert stats["reject_compress_poor"] == 1 and stats["huge_pages"] == 0
    assert stats["stored_pages"] == 1


def test_poorly_compressible_persistent_page_is_stored_raw():
    store = CompressedStore("zstd")
    data = page_of("random")
    ref = store.put(data, True, 0)
    assert ref >= 0 and store.get(ref) == data
    stats = store.stats()
    assert stats["huge_pages"] == 1 and stats["huge_pages_since"] == 1
    assert stats["compr_data_size"] == len(data)
    assert stats["reject_compress_poor"] == 0
    store.free(ref)
    assert store.stats()["huge_pages"] == 0 and store.stats()["huge_pages_since"] == 1


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75, 1.0])
def test_the_threshold_is_configurable(fraction):
    store = CompressedStore("lz4", max_compressed_fraction=fraction)
    pages = [page_of(kind, seed=s) for kind in ("text", "half", "binary") for s in range(4)]
    for data in pages:
        ref = store.put(data, False, 0)
        assert ref != REJECTED and store.get(ref) == data
        assert store.poor(ref) == (compressed_size("lz4", data) > fraction * len(data))


def test_mean_size_cap_refuses_large_pages_while_the_mean_is_above_it():
    store = CompressedStore("lz4", max_mean_fraction=0.5)
    half = page_of("half")  # compresses to just over half a page
    assert compressed_size("lz4", half) > 0.5 * len(half)
    assert store.put(half, False, 0) >= 0  # nothing stored yet: the mean is 0
    assert store.put(page_of("half", seed=1), False, 0) == REJECTED
    assert store.stats()["reject_mean_size"] == 1
    assert store.put(page_of("half", seed=2), True, 0) >= 0  # persistent: never refused
    for seed in range(8):  # small pages pull the mean down, so large ones fit again
        assert store.put(page_of("binary", seed=seed)[:512] * 8, False, 0) >= 0
    assert store.put(page_of("half", seed=3), False, 0) >= 0


@pytest.mark.parametrize("kind", ["zeros", "byte", "word"])
def test_same_filled_pages_take_no_slot(kind):
    store = CompressedStore("lz4")
    data = page_of(kind, 65536)
    ref = store.put(data, False, 0)
    assert store.get(ref) == data
    stats = store.stats()
    assert stats["same_pages"] == 1 and stats["slot_bytes"] == 0
    assert stats["compr_data_size"] == 0
    assert store.charge(ref) == store.used_bytes < 64
    store.free(ref)
    assert store.used_bytes == 0 and store.stats()["same_pages"] == 0


def test_a_page_that_only_starts_and_ends_alike_is_not_same_filled():
    store = CompressedStore(None, dedup=None)
    data = bytes(8) + page_of("text")[8:-8] + bytes(8)
    ref = store.put(data, False, 0)
    assert store.get(ref) == data and store.stats()["same_pages"] == 0


def test_charge_is_the_slot_plus_metadata_and_sums_to_used_bytes():
    store = CompressedStore("lz4", dedup=None)
    refs = [store.put(page_of("text", seed=s), False, 0) for s in range(50)]
    for ref in refs:
        size = store.table.clen[ref]
        assert size <= store.charge(ref) - store.row_bytes - OWNER_BYTES < size + 16
    assert sum(store.charge(r) for r in refs) == store.used_bytes


def test_clients_choose_their_own_codec_and_switch_at_run_time():
    host = tmem.Host(64 << 20, compress="lz4", dedup=None)
    raw = host.connect("raw", compress=None)
    fast = host.connect("fast")
    pools = {c: c.new_pool(persistent=True) for c in (raw, fast)}
    for client, pool in pools.items():
        assert client.put_page(pool, 1, 0, page_of("text"))
    store = host.stats()["store"]
    assert store["raw_pages"] == 1
    assert store["compr_data_size"] == 4096 + compressed_size("lz4", page_of("text"))
    host.set_client("fast", compress="zstd")
    assert fast.put_page(pools[fast], 1, 1, page_of("text", seed=1))
    assert host.stats()["store"]["compr_data_size"] == (
        4096
        + compressed_size("lz4", page_of("text"))
        + compressed_size("zstd", page_of("text", seed=1))
    )
    assert fast.get_page(pools[fast], 1, 0) == page_of("text")  # the lz4 page is still read back
    assert raw.get_page(pools[raw], 1, 0) == page_of("text")


@pytest.mark.parametrize("bad", ["gzip", "LZ4", 4, ""])
def test_unknown_compressors_and_scopes_are_invalid_arguments(bad):
    host = tmem.Host(1 << 20)
    with pytest.raises(tmem.InvalidArgument):
        host.connect("vm1", compress=bad)
    host.connect("vm2")
    with pytest.raises(tmem.InvalidArgument):
        host.set_client("vm2", compress=bad)
    with pytest.raises(tmem.InvalidArgument):
        tmem.Host(1 << 20, compress=bad)
    with pytest.raises(tmem.InvalidArgument):
        tmem.Host(1 << 20, dedup=bad)


def test_host_defaults_are_lz4_with_dedup_per_client_and_raw_means_the_ram_store():
    store = tmem.Host(1 << 20).stats()["store"]
    assert (store["compress"], store["dedup"]) == ("lz4", "client")
    assert isinstance(make_store(None, None), RamStore)
    raw = tmem.Host(1 << 20, compress=None)
    assert isinstance(raw.store, RamStore)
    with pytest.raises(tmem.InvalidArgument):
        raw.connect("vm1", compress="lz4")


@pytest.mark.parametrize("option", ["max_compressed_fraction", "max_mean_fraction"])
@pytest.mark.parametrize("value", [0, -0.5, 1.5, "half"])
def test_thresholds_out_of_range_are_invalid(option, value):
    with pytest.raises(tmem.InvalidArgument):
        make_store("lz4", **{option: value})

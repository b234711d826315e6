"""The SSD log tier on its own: records, versions, compaction, a full log, write errors."""

from __future__ import annotations

import os
import random
import resource
import signal
import threading
from array import array

import pytest

from tmem.errors import InvalidArgument, TierError
from tmem.tier import fastload
from tmem.tier.base import Demotion
from tmem.tier.ssd import SsdTier

SEG = 128 << 10


@pytest.fixture(params=["compiled", "python"])
def tier(tmp_path, request):
    """The tier, reading and checking records with the compiled module and without it."""
    made = SsdTier(str(tmp_path), 8 * SEG, segment_size=SEG)
    if request.param == "python":
        made.read_record = made.quick_load = None
    elif made.read_record is None:
        pytest.skip("tmem.tier._fastload was not built (tests/tier/test_fastload.py says why)")
    yield made
    made.close()


def blob(seed: int, size: int = 3000) -> bytes:
    return random.Random(seed).randbytes(size)


def test_pages_come_back_byte_exact_and_only_under_their_version(tier):
    items = [Demotion(100 + i, i, blob(i), persistent=i % 2 == 0) for i in range(20)]
    locs = tier.store(items)
    assert None not in locs
    for item, loc in zip(items, locs, strict=True):
        assert tier.load(loc, item.tag) == item.payload
        assert tier.load(loc, item.tag + 1) is None  # another version of that slot: never
    assert tier.stats()["pages"] == 20


def test_a_freed_slot_reused_never_returns_the_old_page(tier):
    [loc] = tier.store([Demotion(1, 1, blob(1), True)])
    tier.free([(loc, 1)])
    assert tier.load(loc, 1) is None
    [again] = tier.store([Demotion(2, 2, blob(2), True)])
    assert again == loc  # the slot is reused...
    assert tier.load(loc, 1) is None  # ...but the old version is gone for good
    assert tier.load(loc, 2) == blob(2)


def test_each_batch_is_one_large_write_of_whole_blocks_and_is_counted(tier):
    before = tier.stats()
    tier.store([Demotion(i + 1, i, blob(i, 2000), False) for i in range(30)])
    after = tier.stats()
    assert after["writes"] - before["writes"] == 1
    written = after["bytes_written"] - before["bytes_written"]
    assert written % 4096 == 0 and written >= 30 * 2000


def test_the_kernel_page_cache_is_bypassed(tier):
    # O_DIRECT where the file system allows it (not tmpfs); else fadvise after each write.
    with open(f"/proc/self/fdinfo/{tier.fd}") as fh:
        flags = int(fh.read().split("flags:")[1].split()[0], 8)
    assert tier.direct == bool(flags & os.O_DIRECT)


def test_compaction_keeps_persistent_pages_and_drops_ephemeral_ones(tier):
    tag = 0
    persistent: dict[int, tuple[int, bytes]] = {}
    ephemeral = set()
    # Fill far past the file's size; free most persistent pages as we go, as flushes would,
    # but keep one in four for good, so that compaction has live pages to move.
    for _ in range(40):
        batch = []
        for i in range(10):
            tag += 1
            batch.append(Demotion(tag, tag, blob(tag), persistent=i < 4))
        locs = tier.store(batch)
        for item, loc in zip(batch, locs, strict=True):
            if loc is None:
                continue
            if item.persistent:
                persistent[item.tag] = (loc, item.payload)
            else:
                ephemeral.add(item.tag)
        for old in [t for t in persistent if t < tag - 30 and t % 10 != 1]:
            loc, _ = persistent.pop(old)
            tier.free([(loc, old)])
    stats = tier.stats()
    assert stats["compactions"] > 0 and stats["relocated"] > 0 and stats["dropped"] > 0
    for t, (loc, payload) in persistent.items():
        assert tier.load(loc, t) == payload
    dropped = tier.dropped()
    assert dropped and all(key == t and t in ephemeral for key, t in dropped)
    assert tier.dropped() == []  # reported once


def test_a_full_log_refuses_pages_and_keeps_what_it_has(tier):
    kept = {}
    tag = 0
    while True:
        tag += 1
        [loc] = tier.store([Demotion(tag, tag, blob(tag), True)])
        if loc is None:
            break
        kept[tag] = loc
        assert tag < 1000, "an 1 MiB log took 3 MB of persistent pages"
    assert tier.healthy  # full is not failed: frees make room again
    assert len(kept) * 3000 > 0.6 * tier.size
    for t, loc in kept.items():
        assert tier.load(loc, t) == blob(t)
    for t in list(kept)[: len(kept) // 2]:
        tier.free([(kept.pop(t), t)])
    tag += 1
    [loc] = tier.store([Demotion(tag, tag, blob(tag), True)])
    assert loc is not None
    for t, loc in kept.items():
        assert tier.load(loc, t) == blob(t)


def test_a_write_error_takes_the_tier_out_of_service_and_keeps_what_it_wrote(tier):
    early = [Demotion(i + 1, i, blob(i), True) for i in range(10)]
    locs = tier.store(early)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        # The kernel now fails every write past the first segment with EFBIG.
        resource.setrlimit(resource.RLIMIT_FSIZE, (SEG, limit[1]))
        later = [Demotion(100 + i, i, blob(100 + i), True) for i in range(60)]
        assert tier.store(later) == [None] * 60
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    stats = tier.stats()
    assert (
        not tier.healthy
        and stats["write_errors"] == 1
        and "EFBIG" in str(stats["failure"])
        or ("too large" in str(stats["failure"]))
    )
    assert tier.store([Demotion(999, 0, blob(999), False)]) == [None]  # out of service
    for item, loc in zip(early, locs, strict=True):
        assert tier.load(loc, item.tag) == item.payload  # what it wrote stays readable


def test_a_device_that_fails_every_write(tmp_path):
    tier = SsdTier("/dev/full", 8 * SEG, segment_size=SEG)
    try:
        assert tier.store([Demotion(1, 1, blob(1), True)]) == [None]
        assert not tier.healthy and "No space" in tier.stats()["failure"]
    finally:
        tier.close()
    assert os.path.exists("/dev/full")  # close removes only regular files it made


def test_a_corrupted_record_is_an_error_not_a_page(tier):
    [loc] = tier.store([Demotion(7, 7, blob(7), True)])
    fd = os.open(tier.path, os.O_RDWR)
    try:
        os.pwrite(fd, b"\xff" * 16, tier.off[loc] + 40)
        os.fsync(fd)
    finally:
        os.close(fd)
    with pytest.raises(TierError):
        tier.load(loc, 7)


@pytest.mark.parametrize(
    ("size", "segment"), [(SEG, SEG), (8 * SEG, 4096), (8 * SEG, SEG + 1), ("1G", None)]
)
def test_bad_sizes_are_refused(tmp_path, size, segment):
    with pytest.raises(InvalidArgument):
        SsdTier(str(tmp_path), size, segment_size=segment)


def test_an_unusable_path_is_refused(tmp_path):
    with pytest.raises(InvalidArgument):
        SsdTier(str(tmp_path / "missing" / "log"), 8 * SEG, segment_size=SEG)


@pytest.mark.parametrize("seed", [1, 2])
def test_compaction_keeps_every_live_page_whatever_the_record_sizes(tier, seed):
    # Sizes that leave every gap before a block's end, down to a few bytes: a scan of a
    # segment must never mistake the end of a write for a record.
    rng = random.Random(seed)
    live: dict[int, tuple[int, Demotion]] = {}
    tag = 0
    for _ in range(400):
        batch = []
        for _ in range(rng.randrange(1, 12)):
            tag += 1
            size = rng.choice(
                [rng.randrange(1, 4200), 4096 - 32 - rng.randrange(0, 12), rng.randrange(1, 100)]
            )
            batch.append(Demotion(tag, tag, rng.randbytes(size), rng.random() < 0.3))
        for item, loc in zip(batch, tier.store(batch), strict=True):
            if loc is not None:
                live[item.tag] = (loc, item)
        for t in [t for t in live if rng.random() < 0.1]:
            loc, _ = live.pop(t)
            tier.free([(loc, t)])
        for _, t in tier.dropped():
            assert not live.pop(t)[1].persistent
    assert tier.stats()["compactions"] > 20
    for t, (loc, item) in live.items():
        assert tier.load(loc, t) == item.payload


def test_no_record_that_fits_a_block_straddles_two_and_a_load_reads_one_block(tier):
    rng = random.Random(7)
    sizes = [rng.choice([2100, 1000, 300, 3900, 5000, rng.randrange(1, 4064)]) for _ in range(60)]
    items = [Demotion(i + 1, i, rng.randbytes(size), True) for i, size in enumerate(sizes)]
    locs = tier.store(items)
    assert None not in locs
    for item, loc in zip(items, locs, strict=True):
        off, n = tier.off[loc], tier.length[loc]
        first, last = off // 4096, (off + n - 1) // 4096
        before = tier.stats()["bytes_read"]
        assert tier.load(loc, item.tag) == item.payload
        read = tier.stats()["bytes_read"] - before
        assert last - first + 1 == -(-n // 4096)  # the fewest blocks its length needs...
        assert read == (last - first + 1) * 4096  # ...and a load reads only those


def test_pages_stored_raw_pack_densely_and_read_two_blocks(tier):
    # 4,097 bytes as exported, 4,129 with the header: two blocks each, back to back.
    items = [Demotion(i + 1, i, blob(i, 4097), True) for i in range(30)]
    before = tier.stats()["bytes_written"]
    locs = tier.store(items)
    assert tier.stats()["bytes_written"] - before <= 32 * 4096  # not 30 x 8 KiB
    for item, loc in zip(items, locs, strict=True):
        read = tier.stats()["bytes_read"]
        assert tier.load(loc, item.tag) == item.payload
        assert tier.stats()["bytes_read"] - read == 2 * 4096


def test_small_records_share_blocks(tier):
    before = tier.stats()["bytes_written"]
    tier.store([Demotion(i + 1, i, blob(i, 1000), False) for i in range(90)])
    # Three records of 1032 bytes fit in a block: 30 blocks, not 90.
    assert tier.stats()["bytes_written"] - before <= 31 * 4096


def before_each_read(tier, monkeypatch, before) -> None:
    """Run ``before()`` as each load starts its disk read (compiled or in Python); the
    tier's own reads inside ``before()`` read plainly."""
    import tmem.tier.ssd as ssd

    inside = threading.local()

    def first(read):
        def wrapped(*args):
            if not getattr(inside, "yes", False):
                inside.yes = True
                try:
                    before()
                finally:
                    inside.yes = False
            return read(*args)

        return wrapped

    if tier.read_record is not None:
        monkeypatch.setattr(tier, "read_record", first(tier.read_record))
        if tier.quick_load is not None:
            monkeypatch.setattr(tier, "quick_load", first(tier.quick_load))
    else:

        class Os:
            def __getattr__(self, name):
                return getattr(os, name)

            preadv = staticmethod(first(os.preadv))

        monkeypatch.setattr(ssd, "os", Os())


def test_loads_read_outside_the_lock_side_by_side(tier, monkeypatch):
    # Two loads meet inside their reads: neither holds the tier's lock there, and each
    # reads into a buffer of its own (both pages come back whole).

    items = [Demotion(1 + i, i, blob(i), True) for i in range(2)]
    locs = tier.store(items)
    both = threading.Barrier(2, timeout=5)

    def meet() -> None:
        assert not tier.lock.locked()
        both.wait()

    before_each_read(tier, monkeypatch, meet)
    out: dict[int, bytes | None] = {}

    def load(i: int) -> None:
        out[i] = tier.load(locs[i], items[i].tag)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert out == {0: items[0].payload, 1: items[1].payload}


def test_a_record_that_compaction_moves_while_it_is_read_comes_back(tier, monkeypatch):
    # The index said where the record was; before the read, compaction moved it to another
    # segment, and that segment was reused: the load reads it again at its new place.

    keep = Demotion(7, 7, blob(7), True)
    [loc] = tier.store([keep])
    tier.store([Demotion(100 + i, 100 + i, blob(100 + i), False) for i in range(40)])
    tier.free([(s, t) for s, t in enumerate(tier.tag) if t >= 100])  # its segment: one page
    first = tier.off[loc]
    tags = iter(range(1000, 10**6))

    old = first // tier.seg

    def move_it() -> None:
        # Persistent pages elsewhere, so its segment is the one compacted, then reused and
        # written over where the record was.
        for _ in range(300):
            if tier.open == old and tier.flushed > first % tier.seg + 32:
                break
            batch = [Demotion(t, t, blob(t), True) for t in (next(tags) for _ in range(10))]
            tier.store(batch)
            tier.free([(s, t) for s, t in enumerate(tier.tag) if t >= 1000 and t % 10])

    before_each_read(tier, monkeypatch, move_it)
    assert tier.load(loc, 7) == keep.payload
    assert tier.off[loc] // tier.seg != old and tier.open == old
    assert tier.stats()["compactions"] >= 1 and tier.stats()["load_failures"] == 0


def hold_writes(monkeypatch, when=lambda: True):
    """Each write of the tier (when ``when()`` says so) waits, before it reaches the disk,
    until the test lets it go: ``(writing, go)`` events."""
    from tmem.tier import ssd

    writing, go = threading.Event(), threading.Event()

    def pwrite(fd, data, offset):
        if when():
            writing.set()
            assert go.wait(20)
        return os.pwrite(fd, data, offset)

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)

    held = Os()
    held.pwrite = pwrite  # type: ignore[attr-defined]
    monkeypatch.setattr(ssd, "os", held)
    return writing, go


def in_thread(call):
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=call()), daemon=True)
    thread.start()
    return thread, out


def indexed_bytes_agree(tier) -> bool:
    """Each segment's live bytes are those of the records the index holds there."""
    live = [0] * tier.nseg
    for slot, tag in enumerate(tier.tag):
        if tag:
            live[tier.off[slot] // tier.seg] += tier.length[slot]
    return live == list(tier.live) and tier.pages == sum(1 for t in tier.tag if t)


def test_loads_go_on_while_a_demotion_is_written_and_its_pages_wait_for_the_disk(tier, monkeypatch):
    old = [Demotion(1 + i, i, blob(i), True) for i in range(3)]
    old_locs = tier.store(old)
    writing, go = hold_writes(monkeypatch)
    new = [Demotion(100 + i, i, blob(100 + i), True) for i in range(3)]
    writer, stored = in_thread(lambda: tier.store(new))
    try:
        assert writing.wait(10)
        # The write has not reached the disk: loads of other records do not wait for it...
        pairs = list(zip(old_locs, old, strict=True))
        reader, loaded = in_thread(lambda: [tier.load(loc, d.tag) for loc, d in pairs])
        reader.join(5)
        assert loaded == {"result": [d.payload for d in old]}
        # ...and the records being written are not readable yet, wherever they will be.
        unwritten = [tier.load(s, d.tag) for s in range(len(tier.tag)) for d in new]
        assert unwritten == [None] * len(unwritten)
    finally:
        go.set()
    writer.join(10)
    locs = stored["result"]
    pairs = zip(locs, new, strict=True)
    assert [tier.load(loc, d.tag) for loc, d in pairs] == [d.payload for d in new]
    assert indexed_bytes_agree(tier)


def test_records_compaction_moves_are_read_at_their_old_place_until_written(tier, monkeypatch):
    # While compaction's write of the records it moves is held, they load from where they
    # were; one freed meanwhile is not brought back at its new place.
    writing, go = hold_writes(monkeypatch, lambda: any(m[2] >= 0 for m in tier._unpublished))
    seen: dict[int, int] = {}

    def fill() -> None:
        for t in range(1, 400):
            [loc] = tier.store([Demotion(t, t, blob(t), True)])
            if loc is None:
                return
            seen[t] = loc
            if t % 2:
                tier.free([(loc, t)])
                del seen[t]
            if tier.counters["compactions"]:
                return

    writer, _ = in_thread(fill)
    try:
        assert writing.wait(20)
        moving = [(slot, tag) for slot, tag, old, _ in tier._unpublished if old >= 0]
        assert len(moving) >= 2
        assert all(tier.load(slot, tag) == blob(tag) for slot, tag in moving)
        gone_slot, gone_tag = moving[0]
        tier.free([(gone_slot, gone_tag)])
    finally:
        go.set()
    writer.join(20)
    assert tier.counters["compactions"] == 1
    assert tier.load(gone_slot, gone_tag) is None
    del seen[gone_tag]
    assert all(tier.load(loc, t) == blob(t) for t, loc in seen.items())
    assert indexed_bytes_agree(tier)


def test_a_compiled_load_that_read_a_stale_index_row_goes_the_careful_way(tier, monkeypatch):
    # The compiled load reads the index holding only the interpreter: a row a writer is
    # changing may be stale.  Here it sees the place a record had before compaction moved
    # it and the segment was written over: the record fails its checks there, and the
    # load looks it up again under the lock and reads it at its new place.
    if tier.quick_load is None:
        pytest.skip("the compiled load is not used here")
    keep = Demotion(7, 7, blob(7), True)
    [loc] = tier.store([keep])
    tier.store([Demotion(100 + i, 100 + i, blob(100 + i), False) for i in range(40)])
    tier.free([(s, t) for s, t in enumerate(tier.tag) if t >= 100])
    stale = array("q", tier.off)
    old = stale[loc] // tier.seg
    tags = iter(range(1000, 10**6))
    for _ in range(300):  # compaction moves it; its old segment is reused and written over
        if tier.open == old and tier.flushed > stale[loc] % tier.seg + 32:
            break
        tier.store([Demotion(t, t, blob(t), True) for t in (next(tags) for _ in range(10))])
        tier.free([(s, t) for s, t in enumerate(tier.tag) if t >= 1000 and t % 10])
    assert tier.off[loc] != stale[loc]
    answers = []

    def with_stale_row(slot, tag):
        row = (tier.fd, None, stale, tier.length, tier.tag, tier._counts)
        answers.append(fastload.load_record(*row, slot, tag))
        return answers[-1]

    monkeypatch.setattr(tier, "quick_load", with_stale_row)
    assert tier.load(loc, 7) == keep.payload
    assert answers == [False] and tier.stats()["load_failures"] == 0


def test_compiled_loads_at_the_same_time_each_read_into_a_buffer_of_their_own(tier):
    # The compiled load takes an aligned buffer of the C module's own for its read (the
    # interpreter let go meanwhile): loads in several threads at once never share one, so
    # none reads a record another's read is writing over, and none fails its checks.
    if tier.quick_load is None:
        pytest.skip("the compiled load is not used here")
    items = [Demotion(1 + i, i, blob(i), True) for i in range(64)]
    locs = tier.store(items)
    wrong: list[int] = []

    def load_all(seed: int) -> None:
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        for _ in range(4):
            for i in order:
                if tier.load(locs[i], items[i].tag) != items[i].payload:
                    wrong.append(i)

    threads = [threading.Thread(target=load_all, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = tier.stats()
    assert wrong == []
    assert stats["loads"] == 4 * 4 * 64 and tier.counters["loads"] == 0  # none went careful

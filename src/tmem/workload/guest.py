"""Guests: one trace replayed through a frontend onto a real file.

A :class:`CacheGuest` reads and writes a real backing file through its own
:class:`~tmem.frontends.cleancache.CleanCache` (a private page cache of a few
pages, with tmem as the victim cache behind it).  A :class:`SwapGuest` treats
the trace as references to its anonymous memory: only a few pages are
resident, and the rest page out through
:class:`~tmem.frontends.frontswap.Frontswap` to a real swap file.

Every page a guest reads back is compared with the bytes it must hold, so a
wrong page from the frontend or the host stops the run.  Guests advance in
steps of about ``budget`` page accesses so that a runner can keep many of them
in step and sample them between steps.
"""

from __future__ import annotations

import time
import uuid as _uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tmem.api import DEFAULT_PAGE_SIZE, Client, Stats
from tmem.workload.content import ContentMap
from tmem.workload.errors import WorkloadError
from tmem.workload.traces import Trace

_T = TypeVar("_T")


class TimedClient:
    """A :class:`tmem.api.Client` that counts the CPU time its calls take in the calling thread.

    Each method is one line over :meth:`_timed`, so the cost of a call is one
    clock read on each side.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self.cpu_ns = 0
        self.calls = 0

    def _timed(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        start = time.thread_time_ns()
        try:
            return call(*args, **kwargs)
        finally:
            self.cpu_ns += time.thread_time_ns() - start
            self.calls += 1

    def new_pool(
        self,
        persistent: bool = False,
        shared: bool = False,
        uuid: _uuid.UUID | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> int:
        return self._timed(self._client.new_pool, persistent, shared, uuid, page_size)

    def destroy_pool(self, pool: int) -> None:
        return self._timed(self._client.destroy_pool, pool)

    def put_page(self, pool: int, oid: int, index: int, data: bytes) -> bool:
        return self._timed(self._client.put_page, pool, oid, index, data)

    def get_page(self, pool: int, oid: int, index: int) -> bytes | None:
        return self._timed(self._client.get_page, pool, oid, index)

    def put_pages(self, pool: int, pages: Iterable[Any], *, errors: str = "raise") -> list[Any]:
        return self._timed(self._client.put_pages, pool, pages, errors=errors)

    def get_pages(self, pool: int, handles: Iterable[Any], *, errors: str = "raise") -> list[Any]:
        return self._timed(self._client.get_pages, pool, handles, errors=errors)

    def flush_page(self, pool: int, oid: int, index: int) -> None:
        return self._timed(self._client.flush_page, pool, oid, index)

    def flush_object(self, pool: int, oid: int) -> None:
        return self._timed(self._client.flush_object, pool, oid)

    def stats(self) -> Stats:
        return self._timed(self._client.stats)

    def close(self) -> None:
        return self._timed(self._client.close)


@dataclass
class GuestPages:
    """A guest's trace slice renumbered onto its own dense file: page ``i`` of the
    file is the ``i``-th smallest trace page the slice touches."""

    trace: Trace
    pages: list[int]  # dense file page -> trace page
    starts: list[int]  # request -> dense file page of its first page

    @classmethod
    def of(cls, trace: Trace) -> GuestPages:
        """Number the slice's pages densely; runs of consecutive pages stay consecutive."""
        pages = trace.unique_pages()
        rank = {page: i for i, page in enumerate(pages)}
        return cls(trace, pages, [rank[s] for s in trace.starts])


class Guest(ABC):
    """What both kinds of guest share: the trace, contents, replay position and timer.

    A guest that has replayed its whole slice shuts down (:meth:`finish`): its
    frontend closes and its pages leave the host, as when a virtual machine's
    job ends.
    """

    #: The counter of reads that went to disk (sampled for the timeline).
    IO_COUNTER = "disk_reads"

    def __init__(
        self, name: str, layout: GuestPages, content: ContentMap, page_size: int, client: Any
    ) -> None:
        self.timer = TimedClient(client) if client is not None else None
        self.result: dict[str, int] | None = None
        self.name = name
        self.layout = layout
        self.content = content
        self.page_size = page_size
        self.position = 0  # next request
        self.accesses = 0  # pages touched so far
        self.versions: dict[int, int] = {}  # dense page -> times written

    @property
    def done(self) -> bool:
        """True once every request of the slice has been replayed."""
        return self.position >= len(self.layout.starts)

    def expected(self, page: int) -> bytes:
        """The bytes dense page ``page`` holds now."""
        trace = self.layout.trace.name
        return self.content.page(trace, self.layout.pages[page], self.versions.get(page, 0))

    def step(self, budget: int) -> None:
        """Replay requests until about ``budget`` pages were touched, or the slice ends."""
        trace, starts = self.layout.trace, self.layout.starts
        touched = 0
        while touched < budget and self.position < len(starts):
            i = self.position
            count = trace.counts[i]
            self.request(starts[i], count, bool(trace.writes[i]))
            self.position += 1
            touched += count
        self.accesses += touched

    @abstractmethod
    def request(self, first: int, count: int, write: bool) -> None:
        """Replay one request of ``count`` pages from dense page ``first``."""

    @abstractmethod
    def _shutdown(self) -> dict[str, int]:
        """Close the frontend; return its counters."""

    @abstractmethod
    def _stats(self) -> dict[str, int]:
        """The frontend's counters now."""

    def finish(self) -> dict[str, int]:
        """Shut the guest down (once); its counters, with the CPU time spent in tmem calls."""
        if self.result is None:
            out = self._shutdown()
            out["tmem_cpu_ns"] = self.timer.cpu_ns if self.timer else 0
            out["tmem_calls"] = self.timer.calls if self.timer else 0
            out["accesses"] = self.accesses
            self.result = out
        return self.result

    def io_so_far(self) -> int:
        """Reads from disk or swap so far (sampled between steps)."""
        return int((self.result or self._stats())[self.IO_COUNTER])

    def check(self, first: int, data: bytes) -> None:
        """Raise WorkloadError unless ``data`` is what the pages from ``first`` hold."""
        ps = self.page_size
        for k in range(len(data) // ps):
            if data[k * ps : (k + 1) * ps] != self.expected(first + k):
                raise WorkloadError(f"{self.name} read wrong data in page {first + k}")


class CacheGuest(Guest):
    """Replays a trace on a real file through a private page cache and cleancache."""

    def __init__(
        self,
        name: str,
        layout: GuestPages,
        content: ContentMap,
        path: Path,
        client: Any,
        private_pages: int,
        page_size: int = 4096,
    ) -> None:
        from tmem.frontends.cleancache import CleanCache

        super().__init__(name, layout, content, page_size, client)
        self.path = path
        self.cache = CleanCache(self.timer, cache_pages=private_pages, page_size=page_size)
        self._fill()
        self.cache.enable(path)
        self.file = self.cache.open(path, "r+b")

    def _fill(self) -> None:
        """Write every page of the slice, version 0, to the backing file (set-up, not counted)."""
        with open(self.path, "wb") as f:
            for page in range(len(self.layout.pages)):
                f.write(self.expected(page))

    def request(self, first: int, count: int, write: bool) -> None:
        self.file.seek(first * self.page_size)
        if write:
            for page in range(first, first + count):
                self.versions[page] = self.versions.get(page, 0) + 1
            self.file.write(b"".join(self.expected(p) for p in range(first, first + count)))
        else:
            data = self.file.read(count * self.page_size)
            if len(data) != count * self.page_size:
                raise WorkloadError(f"{self.name} read {len(data)} bytes at page {first}")
            self.check(first, data)

    def _shutdown(self) -> dict[str, int]:
        try:
            self.file.flush()
            self.file.close()
            return self._stats()
        finally:
            self.cache.close()

    def _stats(self) -> dict[str, int]:
        return dict(self.cache.stats())


class SwapGuest(Guest):
    """Treats the trace as memory references: ``frames`` pages resident, the rest swapped.

    Eviction is least recently used.  A page paged in from the swap file
    keeps its copy there until it is written (the copy is then invalidated),
    so evicting it clean again costs nothing, as with Linux's swap cache;
    with ``keep_swap_copy=False`` the copy is freed at once, as Linux does
    once swap is over half full, and the page is stored again when evicted.  A
    page loaded from tmem is taken out of tmem at once (Linux's "exclusive
    gets"), so tmem holds only pages that are not resident; it is stored again
    when it is evicted.  With ``selfshrink``, each step ends with one interval
    of frontswap's self-shrinking policy, which moves pages from tmem to the
    swap file once the guest's tmem use stops growing (Linux's
    frontswap-selfshrink), so that tmem is not held forever by whoever
    filled it first.  ``order`` is frontswap's writeback order (``adaptive`` or
    ``lru``) and ``eviction`` which page of it goes (``frequency`` or ``lru``;
    :class:`~tmem.frontends.frontswap.Frontswap`).
    """

    IO_COUNTER = "swap_reads"

    def __init__(
        self,
        name: str,
        layout: GuestPages,
        content: ContentMap,
        path: Path,
        client: Any,
        frames: int,
        page_size: int = 4096,
        selfshrink: bool = False,
        swap_cache: str = "offer",
        order: str = "adaptive",
        eviction: str = "frequency",
    ) -> None:
        from tmem.frontends.frontswap import Frontswap

        super().__init__(name, layout, content, page_size, client)
        if frames < 1:
            raise WorkloadError(f"{name} needs at least one resident page, not {frames}")
        self.frames = frames
        self.selfshrink = selfshrink and client is not None
        self.keep_swap_copy = swap_cache != "drop"
        self.offer_clean = swap_cache == "offer" and client is not None
        slots = len(layout.pages)
        self.swap = Frontswap(
            self.timer, path, slots=slots, page_size=page_size, order=order, eviction=eviction
        )
        self.resident: OrderedDict[int, bytes] = OrderedDict()
        self.swapped: set[int] = set()  # pages whose swap copy is current
        self.faults = 0
        self.first_touches = 0

    def request(self, first: int, count: int, write: bool) -> None:
        for page in range(first, first + count):
            self.touch(page, write)

    def touch(self, page: int, write: bool) -> None:
        """Reference one page: fault it in if needed, dirty it on a write."""
        if page in self.resident:
            self.resident.move_to_end(page)
        else:
            self._fault(page)
        if write:
            self.versions[page] = self.versions.get(page, 0) + 1
            self.resident[page] = self.expected(page)
            if page in self.swapped:
                self.swapped.discard(page)
                self.swap.invalidate(page)

    def _fault(self, page: int) -> None:
        if page in self.swapped:
            self.faults += 1
            from_tmem = self.swap.stats()["loads"]
            data = bytes(self.swap.load(page))
            self.check(page, data)
            loaded = self.swap.stats()["loads"] != from_tmem
            if loaded and self.offer_clean and self.swap.holds_in_file(page):
                self.swap.drop_from_tmem(page)  # exclusive: the file's copy stays current
            elif loaded or not self.keep_swap_copy:
                self.swap.invalidate(page)
                self.swapped.discard(page)
        else:
            self.first_touches += 1  # first use: the program builds the page, no I/O
            data = self.expected(page)
        self.resident[page] = data
        if len(self.resident) > self.frames:
            victim, victim_data = self.resident.popitem(last=False)
            if victim not in self.swapped:
                self.swap.store(victim, victim_data)
                self.swapped.add(victim)
            elif self.offer_clean:  # clean, its copy in swap: tmem as the swap cache's victim cache
                self.swap.offer(victim, victim_data)

    def step(self, budget: int) -> None:
        """Replay a step; then, with ``selfshrink``, one interval of frontswap's self-shrinking."""
        super().step(budget)
        if self.selfshrink:
            self.swap.selfshrink_step()

    def _shutdown(self) -> dict[str, int]:
        try:
            return self._stats()
        finally:
            self.swap.close()

    def _stats(self) -> dict[str, int]:
        out = dict(self.swap.stats())
        out.update(faults=self.faults, first_touches=self.first_touches)
        return out

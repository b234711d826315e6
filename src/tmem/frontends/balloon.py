"""Self-ballooning for cleancache: the private page cache follows its working set.

A :class:`SelfBalloon` steps :class:`tmem.control.BalloonLaw` (Xen's
selfballoon, with its knob names) over a :class:`CleanCache`: each interval it
measures what the cache did (distinct pages used, reads, refaults that tmem
answered) and resizes the private cache.  Shrinking puts the coldest private
pages into tmem, where the host keeps them while it has room; growing lets the
cache fill again when tmem keeps handing pages back.  The memory a shrink
frees is returned to the machine (glibc's ``malloc_trim``), so that the host
can be given it.

Where the process is confined to a memory cgroup, ``headroom`` (a callable
returning the bytes the cgroup has left, e.g. :func:`cgroup_headroom`) caps
the cache at once when the cgroup has less than ``reserved`` bytes free, so
that a cgroup whose limit shrinks sees the cache shrink instead of the OOM
killer.

Run :meth:`SelfBalloon.step` from your own loop, or :meth:`SelfBalloon.start`
a thread that steps every ``tunables.interval`` seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Callable
from pathlib import Path

from tmem.control import BalloonLaw, BalloonTunables, CacheSignal
from tmem.control.procfs import own_memory_cgroup, page_cache_headroom
from tmem.errors import InvalidArgument
from tmem.frontends.cleancache import CleanCache

#: Bytes a cgroup-confined guest keeps free besides its cache (Xen's ``selfballoon_reserved_mb``).
DEFAULT_RESERVED = 16 << 20


class SelfBalloon:
    """Sizes ``cache``'s private cache every interval; ``max_pages`` defaults to its size now."""

    def __init__(
        self,
        cache: CleanCache,
        tunables: BalloonTunables | None = None,
        *,
        max_pages: int | None = None,
        headroom: Callable[[], int | None] | None = None,
        reserved: int = DEFAULT_RESERVED,
        trim: bool = True,
    ) -> None:
        if type(reserved) is not int or reserved < 0:
            raise InvalidArgument(f"reserved must be a byte count >= 0, not {reserved!r}")
        self.cache = cache
        self.law = BalloonLaw(max_pages or cache.cache_pages, tunables)
        self.tunables = self.law.tunables
        self.headroom = headroom
        self.reserved = reserved
        self.trim = trim
        self.steps = 0
        self.history: list[tuple[CacheSignal, int]] = []  # the last few steps, newest last
        self._last = cache.stats()
        cache.working_set()  # start counting distinct pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def signal(self) -> CacheSignal:
        """What the cache did since the last step (this starts a new interval)."""
        stats = self.cache.stats()
        last, self._last = self._last, stats
        pages = self.cache.cache_pages
        ceiling = None
        if self.headroom is not None:
            free = self.headroom()
            if free is not None:
                spare = (free - self.reserved) // self.cache.page_size
                ceiling = max(1, min(pages, stats["private_pages"]) + spare)
        return CacheSignal(
            pages=pages,
            reads=stats["reads"] - last["reads"],
            touched=self.cache.working_set(),
            refaults=stats["succ_gets"] - last["succ_gets"],
            ceiling=ceiling,
        )

    def step(self) -> int:
        """Measure, decide and resize once; return the private cache's new size in pages."""
        signal = self.signal()
        size = self.law.step(signal)
        if size != signal.pages:
            self.cache.resize(size)
            if size < signal.pages and self.trim:
                trim_allocator()
        self.steps += 1
        self.history = [*self.history[-63:], (signal, size)]
        return size

    def start(self) -> None:
        """Step every ``interval`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tmem-selfballoon", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tunables.interval):
            with contextlib.suppress(InvalidArgument):  # the cache was closed under us
                self.step()

    def stop(self) -> None:
        """Stop the thread (if started) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def cgroup_headroom(directory: str | Path | None = None) -> Callable[[], int | None]:
    """A ``headroom`` callable for the memory cgroup at ``directory`` (default: this
    process's own); it returns None while the cgroup has no limit."""
    path = directory if directory is not None else own_memory_cgroup()
    if path is None:
        return lambda: None
    return lambda: page_cache_headroom(path)


_LIBC = ctypes.util.find_library("c")


def trim_allocator() -> bool:
    """Hand the C allocator's free memory back to the kernel (glibc ``malloc_trim``).

    Python's page-sized bytes objects come from ``malloc``; without this a
    shrunk cache's memory stays in the process.  False where there is no glibc.
    """
    if _LIBC is None:
        return False
    try:
        trim = ctypes.CDLL(_LIBC).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))

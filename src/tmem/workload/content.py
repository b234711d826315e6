"""Real page contents for replayed traces, taken from files on this machine.

Traces say which pages are touched, not what the pages hold; compression and
deduplication only mean something on real bytes.  :class:`Corpus` numbers the
4 KiB pages of real files (Python's standard library, ``/usr/lib``,
``/usr/share``) in a fixed order, and :class:`ContentMap` gives every
``(trace, page, version)`` one of them, deterministically:

* the pages a trace uses are numbered in sorted order, so neighbouring pages of
  a trace hold neighbouring pages of a file, as on a real disk;
* each trace gets its own stretch of the corpus, so two guests replaying the
  same trace hold the same bytes (like clones of one VM image) while guests of
  different traces share nothing by construction;
* version ``v`` (the ``v``-th write of a page) takes the page ``v`` stretches
  further on, so a write changes the bytes.

Pages are read on demand with ``pread`` (the corpus is not held in memory).
When the corpus is smaller than the pages asked for, numbering wraps around;
:attr:`ContentMap.wrapped` says so.
"""

from __future__ import annotations

import os
import stat
import sysconfig
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tmem.workload.errors import WorkloadError

#: Directories skipped while walking: installed third-party packages vary by machine.
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", ".git"})
_MAX_OPEN_FILES = 64


def default_roots() -> list[Path]:
    """Python's standard library, then ``/usr/lib`` and ``/usr/share``, where present."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path("/usr/lib"), Path("/usr/share")]
    return [root for root in roots if root.is_dir()]


def _walk_files(root: Path) -> Iterator[tuple[str, int]]:
    """Readable regular files under ``root`` in sorted order, with their sizes."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            regular = stat.S_ISREG(st.st_mode)
            if regular and st.st_size > 0 and os.access(path, os.R_OK):
                yield path, st.st_size


def _round_robin(iterators: Sequence[Iterator[tuple[str, int]]]) -> Iterator[tuple[str, int]]:
    """One file from each root in turn, so any stretch of pages mixes kinds of content."""
    live = list(iterators)
    while live:
        for it in list(live):
            item = next(it, None)
            if item is None:
                live.remove(it)
            else:
                yield item


class Corpus:
    """At least ``pages_wanted`` pages of real files (fewer if the roots run out)."""

    def __init__(
        self, pages_wanted: int, roots: Iterable[Path] | None = None, page_size: int = 4096
    ) -> None:
        self.page_size = page_size
        self.paths: list[str] = []
        self._first: list[int] = []
        self.pages = 0
        walks = [_walk_files(Path(r)) for r in (default_roots() if roots is None else roots)]
        for path, size in _round_robin(walks):
            if self.pages >= pages_wanted:
                break
            self.paths.append(path)
            self._first.append(self.pages)
            self.pages += -(-size // page_size)
        if not self.pages:
            raise WorkloadError("no readable files to take page contents from")
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def page(self, number: int) -> bytes:
        """Page ``number`` (modulo the corpus size): real file bytes, zero-padded at a file end."""
        number %= self.pages
        k = bisect_right(self._first, number) - 1
        offset = (number - self._first[k]) * self.page_size
        with self._lock:
            data = os.pread(self._fd(k), self.page_size, offset)
        return data.ljust(self.page_size, b"\0")

    def _fd(self, k: int) -> int:
        fd = self._fds.get(k)
        if fd is not None:
            self._fds.move_to_end(k)
            return fd
        try:
            fd = os.open(self.paths[k], os.O_RDONLY)
        except OSError:
            # A file that vanished since the walk reads as zeros.
            fd = os.open(os.devnull, os.O_RDONLY)
        self._fds[k] = fd
        if len(self._fds) > _MAX_OPEN_FILES:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def __getstate__(self) -> dict[str, object]:
        # Open files and the lock stay behind; a copy opens its own.
        state = dict(self.__dict__)
        del state["_fds"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._fds = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the files held open."""
        with self._lock:
            while self._fds:
                os.close(self._fds.popitem()[1])


class ContentMap:
    """The bytes of every ``(trace, page, version)`` of a run, from a :class:`Corpus`."""

    def __init__(self, pages_by_trace: dict[str, Iterable[int]], corpus: Corpus) -> None:
        self.corpus = corpus
        self._base: dict[str, int] = {}
        self._rank: dict[str, dict[int, int]] = {}
        total = 0
        for name in sorted(pages_by_trace):
            ranks = {page: i for i, page in enumerate(sorted(set(pages_by_trace[name])))}
            self._rank[name] = ranks
            self._base[name] = total
            total += len(ranks)
        #: Pages of distinct content the unwritten traces need.
        self.stretch = max(total, 1)
        self.wrapped = corpus.pages < self.stretch

    @classmethod
    def build(
        cls,
        pages_by_trace: dict[str, Iterable[int]],
        roots: Iterable[Path] | None = None,
        versions: int = 2,
        page_size: int = 4096,
    ) -> ContentMap:
        """A map over a corpus big enough for ``versions`` distinct contents of every page."""
        pages = {name: sorted(set(p)) for name, p in pages_by_trace.items()}
        wanted = max(1, sum(len(p) for p in pages.values())) * versions
        return cls(pages, Corpus(wanted, roots, page_size))

    def number(self, trace: str, page: int, version: int = 0) -> int:
        """The corpus page holding version ``version`` of ``page`` of ``trace``."""
        try:
            rank = self._rank[trace][page]
        except KeyError:
            raise WorkloadError(f"page {page} of {trace} was not declared") from None
        return self._base[trace] + rank + version * self.stretch

    def page(self, trace: str, page: int, version: int = 0) -> bytes:
        """The bytes of version ``version`` of ``page`` of ``trace``."""
        return self.corpus.page(self.number(trace, page, version))

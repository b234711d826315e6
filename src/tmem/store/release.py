"""Give ranges of the stores' memory maps back to the kernel, as few system calls as it takes.

A release names ranges as a flat list of ``(chunk, offset, length)`` triples into
a list of maps, each offset on an OS page boundary.  Where the optional C
module ``tmem.store._release`` was built, every 1024 ranges go in one
``process_madvise(PIDFD_SELF_THREAD_GROUP, ..., MADV_DONTNEED)`` call (Linux
6.15 and later; one ``madvise`` costs about 2 µs here, more than the kernel's
work of freeing a page).  Where the kernel refuses that call, the module
releases the same ranges with one ``madvise`` each and this module stops
asking; where the module was not built, or with ``TMEM_PURE=1``,
``mmap.madvise`` releases each range.  Every path releases exactly the ranges
named, nothing else.

:func:`trim_heap` gives the C allocator's free memory back to the kernel
(glibc's ``malloc_trim``): a store that empties calls it, since the arrays and
lists it freed lie in that heap, between blocks still in use, where the
allocator keeps them.
"""

from __future__ import annotations

import ctypes
import importlib
import mmap
from typing import Any, Final

from tmem.loader import pure_requested

#: The pidfd that names the calling process (``PIDFD_SELF_THREAD_GROUP``).
PIDFD_SELF: Final = -10001
_DONTNEED: Final = getattr(mmap, "MADV_DONTNEED", 4)


def _module() -> Any:
    if pure_requested():  # TMEM_PURE=1: mmap.madvise, the pure-Python path
        return None
    try:
        return importlib.import_module("tmem.store._release")
    except ImportError:  # not built (no C compiler at install time)
        return None


class Releaser:
    """Releases ranges; remembers whether the kernel takes them in batches."""

    def __init__(self, module: Any = None, batched: bool = True) -> None:
        self.module = module
        #: Whether ranges go in batches (cleared when the kernel refuses one).
        self.batched = batched and module is not None
        #: The errno of the kernel's refusal, 0 while none came.
        self.refusal = 0
        self.calls = 0  # system calls made, for the stores' statistics

    def release(self, chunks: list[mmap.mmap], ranges: list[int]) -> int:
        """``MADV_DONTNEED`` each ``(chunk, offset, length)`` of ``ranges``; the calls made."""
        if not ranges:
            return 0
        if self.module is None:
            for i in range(0, len(ranges), 3):
                chunks[ranges[i]].madvise(_DONTNEED, ranges[i + 1], ranges[i + 2])
            calls = len(ranges) // 3
        else:
            calls, refusal = self.module.release(
                chunks, ranges, PIDFD_SELF if self.batched else None
            )
            if refusal:
                self.batched, self.refusal = False, refusal
        self.calls += calls
        return calls


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None


_TRIM: Final = _malloc_trim()


def trim_heap() -> None:
    """Give the C heap's free pages back to the kernel, where the allocator can (glibc)."""
    if _TRIM is not None:
        _TRIM(0)


#: The releaser every store uses.
RELEASER: Final = Releaser(_module())

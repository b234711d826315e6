"""The embedded host's lock: ``tmem._hostlock.Lock`` where it was built, else ``threading.Lock``.

Both are CPython's thread lock with the same methods (``acquire(blocking=True,
timeout=-1)``, ``release``, ``locked``, ``with``); the compiled one takes the
host's argument-free ``acquire()`` without parsing arguments, which is most of
what the lock cost a page call (``_hostlock.c``).  ``TMEM_PURE=1`` uses
``threading.Lock``, so the pure-Python run covers the fallback.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from tmem.loader import pure_requested


def _compiled_lock() -> Any:
    if pure_requested():
        return None
    try:
        return importlib.import_module("tmem._hostlock").Lock
    except ImportError:  # not built (no C compiler at install time)
        return None


#: The compiled lock type, or None where it is not in use.
FAST_LOCK: Any = _compiled_lock()


def new_lock() -> threading.Lock:
    """A new lock for a host: the compiled one where built, else ``threading.Lock()``."""
    if FAST_LOCK is not None:
        lock: threading.Lock = FAST_LOCK()
        return lock
    return threading.Lock()

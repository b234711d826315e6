"""A ``MutableMapping`` that spills values past a memory limit through frontswap.

Values live in memory (``fast``) while their total size stays within
``memory_limit`` bytes; past it the least recently used ones are serialized,
split into pages and stored in a :class:`~tmem.frontends.frontswap.Frontswap`
(tmem first, then its swap file).  Reading a spilled value loads its pages,
rebuilds it and brings it back into memory, as Dask's own spill buffer does.

It can be a Dask worker's data store: ``distributed.Worker(data=mapping)``, or
``data=(SpillMapping, {...})`` to have each worker build its own with its swap
file in the worker's local directory.  It offers the ``fast`` attribute and the
``evict()`` method that Dask's memory monitor uses to spill under memory
pressure.

A value that cannot be spilled (it does not pickle, or the swap area is full)
stays in memory and is counted in ``spill_failures``; a value is never lost.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from typing import Any

from tmem.api import DEFAULT_PAGE_SIZE, Client
from tmem.errors import InvalidArgument
from tmem.frontends.frontswap import Frontswap

DEFAULT_SLOTS = 1 << 18  # 1 GiB of 4 KiB pages; the swap file is sparse


def default_sizeof(value: Any) -> int:
    """Dask's estimate of ``value``'s memory when Dask is installed, else ``sys.getsizeof``."""
    try:
        from dask.sizeof import sizeof
    except ImportError:
        return sys.getsizeof(value)
    return int(sizeof(value))


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class SpillMapping(MutableMapping[Hashable, Any]):
    """A dict that keeps at most ``memory_limit`` bytes of values in memory, the rest in swap.

    The swap area has ``slots`` pages of ``page_size`` bytes at ``swap_path``
    (default: a new file in ``worker_local_directory`` or the temporary
    directory, removed by :meth:`close`).  ``client`` may be None: then spilled
    values go to the swap file only.
    """

    def __init__(
        self,
        client: Client | None,
        memory_limit: int,
        swap_path: str | os.PathLike[str] | None = None,
        slots: int = DEFAULT_SLOTS,
        page_size: int = DEFAULT_PAGE_SIZE,
        write_behind: bool = False,
        worker_local_directory: str | None = None,
        sizeof: Callable[[Any], int] = default_sizeof,
        dumps: Callable[[Any], bytes] = _dumps,
        loads: Callable[[bytes], Any] = pickle.loads,
    ) -> None:
        if type(memory_limit) is not int or memory_limit < 0:
            raise InvalidArgument(f"memory_limit must be an integer >= 0, not {memory_limit!r}")
        self.memory_limit = memory_limit
        self._own_file = swap_path is None
        if swap_path is None:
            fd, swap_path = tempfile.mkstemp(prefix="tmem-spill-", dir=worker_local_directory)
            os.close(fd)
        self.swap = Frontswap(client, swap_path, slots, page_size, write_behind)
        self._sizeof, self._dumps, self._loads = sizeof, dumps, loads
        self.lock = threading.RLock()
        self.fast: OrderedDict[Hashable, Any] = OrderedDict()
        self._weights: dict[Hashable, int] = {}
        self.fast_bytes = 0
        self.slow: dict[Hashable, tuple[list[int], int]] = {}  # key -> (slots, length)
        self._free: list[int] = []
        self._next_slot = 0
        self._counts = {"spilled": 0, "unspilled": 0, "spill_failures": 0, "spilled_bytes": 0}

    # --- the mapping ---------------------------------------------------------

    def __setitem__(self, key: Hashable, value: Any) -> None:
        weight = self._sizeof(value)
        with self.lock:
            self._discard(key)
            if weight > self.memory_limit and self._spill(key, value):
                return
            self._keep(key, value, weight)
            self._fit(keep=key)

    def __getitem__(self, key: Hashable) -> Any:
        with self.lock:
            if key in self.fast:
                self.fast.move_to_end(key)
                return self.fast[key]
            if key not in self.slow:
                raise KeyError(key)
            value = self._loads(self._read(key))
            weight = self._sizeof(value)
            if weight > self.memory_limit:
                return value  # it would be spilled again at once: leave it in swap
            self._release(key)
            self._counts["unspilled"] += 1
            self._keep(key, value, weight)
            self._fit(keep=key)
            return value

    def __delitem__(self, key: Hashable) -> None:
        with self.lock:
            if not self._discard(key):
                raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.fast or key in self.slow

    def __iter__(self) -> Iterator[Hashable]:
        with self.lock:
            keys = [*self.fast, *self.slow]
        return iter(keys)

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow)

    # --- Dask's manual eviction protocol -------------------------------------

    def evict(self) -> int:
        """Spill the least recently used value in memory; its size, or -1 if none went."""
        with self.lock:
            if not self.fast:
                return -1
            key = next(iter(self.fast))
            weight = self._weights[key]
            if self._spill(key, self.fast[key]):
                self._drop_fast(key)
                return weight
            self.fast.move_to_end(key)  # it cannot go; try the others first next time
            return -1

    # --- inside ----------------------------------------------------------------

    def _keep(self, key: Hashable, value: Any, weight: int) -> None:
        self.fast[key] = value
        self._weights[key] = weight
        self.fast_bytes += weight

    def _drop_fast(self, key: Hashable) -> None:
        del self.fast[key]
        self.fast_bytes -= self._weights.pop(key)

    def _fit(self, keep: Hashable) -> None:
        """Spill least recently used values (never ``keep``) until memory fits the limit."""
        for key in list(self.fast):
            if self.fast_bytes <= self.memory_limit:
                return
            if key != keep and self._spill(key, self.fast[key]):
                self._drop_fast(key)

    def _discard(self, key: Hashable) -> bool:
        if key in self.fast:
            self._drop_fast(key)
            return True
        if key in self.slow:
            self._release(key)
            return True
        return False

    def _spill(self, key: Hashable, value: Any) -> bool:
        """Write ``value`` to swap under ``key``; False (and counted) if it cannot go."""
        try:
            data = self._dumps(value)
        except Exception:  # an unpicklable value stays in memory
            self._counts["spill_failures"] += 1
            return False
        ps = self.swap.page_size
        slots = self._alloc(max(1, -(-len(data) // ps)))
        if slots is None:
            self._counts["spill_failures"] += 1
            return False
        view = memoryview(data)
        try:
            for i, slot in enumerate(slots):
                chunk = view[i * ps : (i + 1) * ps]
                self.swap.store(slot, chunk if len(chunk) == ps else bytes(chunk).ljust(ps, b"\0"))
        except OSError:  # the swap file could not take it: the value stays in memory
            for slot in slots:
                self.swap.invalidate(slot)
            self._free.extend(slots)
            self._counts["spill_failures"] += 1
            return False
        self.slow[key] = (slots, len(data))
        self._counts["spilled"] += 1
        self._counts["spilled_bytes"] += len(data)
        return True

    def _read(self, key: Hashable) -> bytes:
        slots, length = self.slow[key]
        return b"".join(self.swap.load(slot) for slot in slots)[:length]

    def _release(self, key: Hashable) -> None:
        slots, _ = self.slow.pop(key)
        for slot in slots:
            self.swap.invalidate(slot)
        self._free.extend(slots)

    def _alloc(self, n: int) -> list[int] | None:
        """``n`` free slots (reused ones first), or None if the swap area has too few."""
        fresh = self.swap.slots - self._next_slot
        if len(self._free) + fresh < n:
            return None
        take = min(n, len(self._free))
        slots = self._free[len(self._free) - take :]
        del self._free[len(self._free) - take :]
        slots.extend(range(self._next_slot, self._next_slot + n - take))
        self._next_slot += n - take
        return slots

    # --- the rest ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Keys and bytes in memory and in swap, spill counters, and the swap's own stats."""
        with self.lock:
            out: dict[str, Any] = dict(self._counts)
            out.update(fast_keys=len(self.fast), fast_bytes=self.fast_bytes)
            out["slow_keys"] = len(self.slow)
            out["slow_bytes"] = sum(length for _, length in self.slow.values())
            out["swap"] = self.swap.stats()
            return out

    def close(self) -> None:
        """Drop every value, close the swap area and remove a swap file made here."""
        with self.lock:
            self.fast.clear()
            self._weights.clear()
            self.slow.clear()
            self.fast_bytes = 0
            self.swap.close()
            if self._own_file:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.swap.path)

    def __enter__(self) -> SpillMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<SpillMapping {len(self.fast)} in memory ({self.fast_bytes} B),"
            f" {len(self.slow)} spilled>"
        )

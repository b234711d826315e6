"""The fault handler behind :class:`~tmem.frontends.SwapMemory`, run in its own process.

The handler owns the region's userfaultfd and a mapping of the region's memory
file.  It resolves each missing-page fault from the frontswap frontend (tmem's
persistent pool, else the swap file) or with zeros, keeps at most
``resident`` pages in memory, and evicts the coldest page (least recently
faulted in or first written) when there are more:

1. a page that was written since it came in (it took a write-protect fault)
   is write-protected again, so writers wait, copied, and stored through
   :class:`~tmem.frontends.Frontswap`; a page written while it is being
   evicted is therefore never lost: the writer waits until the page is gone,
   then faults it back in, with the stored copy;
2. a clean page is only dropped: its stored copy (or zeros) is still true;
3. the page is freed by punching a hole in the memory file, which takes it
   out of every mapping.

Pages come in write-protected, so the first write to each takes one fault
that marks it dirty.  A page whose stored copy was lost with the host is
poisoned (``UFFDIO_POISON``): touching it raises SIGBUS in the program, after
the handler has said on stderr which page was lost -- never a wrong byte.

Running in another process keeps the handler free of the program's GIL: a
thread that faults while holding it (pure Python code, or numpy) waits in
the kernel, and the handler goes on.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import select
import signal
import socket
import sys
from collections import OrderedDict
from typing import Any

from tmem.api import Client
from tmem.errors import TmemError
from tmem.frontends import uffd
from tmem.frontends.errors import PagesLost
from tmem.frontends.frontswap import Frontswap

#: The handler's own counters (frontswap's are reported beside them).
COUNTERS: tuple[str, ...] = (
    "faults",
    "zero_fills",
    "store_fills",
    "write_faults",
    "evictions",
    "dirty_evictions",
    "zero_pages",
    "lost_pages",
    "spurious",
)


class Handler:
    """Resolves the faults of one region; single-threaded, driven by :meth:`serve`."""

    def __init__(
        self,
        client: Client | None,
        uffd_fd: int,
        mem_fd: int,
        base: int,
        size: int,
        resident: int,
        swap_path: str,
        write_behind: bool = False,
    ) -> None:
        self.fd = uffd_fd
        self.mem_fd = mem_fd
        self.base = base
        self.size = size
        self.ps = mmap.PAGESIZE
        self.pages = size // self.ps
        self.resident_limit = resident
        self.view = mmap.mmap(mem_fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        self.swap = Frontswap(
            client, swap_path, slots=self.pages, page_size=self.ps, write_behind=write_behind
        )
        self.resident: OrderedDict[int, bool] = OrderedDict()  # page -> dirty
        self.stored = bytearray(self.pages)  # 1 where the swap area holds the page
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.zeros = ctypes.create_string_buffer(self.ps)
        self.page_buf = ctypes.create_string_buffer(self.ps)
        self.zero_bytes = bytes(self.ps)
        self.poisoned: set[int] = set()

    # --- faults ----------------------------------------------------------------

    def handle(self, msg: bytes) -> None:
        """Resolve one userfaultfd message."""
        fault = uffd.parse_fault(msg)
        if fault is None:
            return
        flags, address = fault
        page = (address - self.base) // self.ps
        start = self.base + page * self.ps
        if flags & uffd.PAGEFAULT_FLAG_WP:
            self._write_fault(page, start)
        else:
            self._missing_fault(page, start)

    def _missing_fault(self, page: int, start: int) -> None:
        if page in self.resident or page in self.poisoned:  # a second fault on one page
            self.counts["spurious"] += 1
            uffd.wake(self.fd, start, self.ps)
            return
        self.counts["faults"] += 1
        if self.stored[page]:
            try:
                data = self.swap.load(page)
            except PagesLost:
                self._lost(page, start)
                return
            ctypes.memmove(self.page_buf, data, self.ps)
            src = ctypes.addressof(self.page_buf)
            self.counts["store_fills"] += 1
        else:
            src = ctypes.addressof(self.zeros)
            self.counts["zero_fills"] += 1
        if uffd.copy(self.fd, start, src, self.ps, uffd.COPY_MODE_WP):
            self.resident[page] = False
        else:
            uffd.wake(self.fd, start, self.ps)
        self._make_room()

    def _write_fault(self, page: int, start: int) -> None:
        if page not in self.resident:
            # It was evicted while the writer waited: let it fault the page in again.
            self.counts["spurious"] += 1
            uffd.wake(self.fd, start, self.ps)
            return
        self.counts["write_faults"] += 1
        self.resident[page] = True
        self.resident.move_to_end(page)
        uffd.writeprotect(self.fd, start, self.ps, 0)  # wakes the writer

    def _lost(self, page: int, start: int) -> None:
        self.counts["lost_pages"] += 1
        print(
            f"tmem SwapMemory: page {page} (address {start:#x}) was lost with the tmem host; "
            "the program gets SIGBUS where it touches it",
            file=sys.stderr,
            flush=True,
        )
        self.poisoned.add(page)
        # An evicted page's write-protect marker stays in its page table
        # entry; poison needs the entry empty, so the marker goes first.
        uffd.writeprotect(self.fd, start, self.ps, uffd.WRITEPROTECT_MODE_DONTWAKE)
        try:
            uffd.poison(self.fd, start, self.ps)
        except OSError as exc:
            print(f"tmem SwapMemory: cannot poison page {page} ({exc}); stopping the program",
                  file=sys.stderr, flush=True)  # fmt: skip
            os.kill(os.getppid(), signal.SIGBUS)

    # --- eviction ----------------------------------------------------------------

    def _make_room(self) -> None:
        while len(self.resident) > self.resident_limit:
            page, dirty = self.resident.popitem(last=False)
            self._evict(page, dirty)

    def _evict(self, page: int, dirty: bool) -> None:
        start = self.base + page * self.ps
        offset = page * self.ps
        self.counts["evictions"] += 1
        if dirty:
            self.counts["dirty_evictions"] += 1
            # Writers wait from here until the page is gone; then they fault it back.
            uffd.writeprotect(self.fd, start, self.ps, uffd.WRITEPROTECT_MODE_WP)
            data = self.view[offset : offset + self.ps]
            if data == self.zero_bytes:
                self.counts["zero_pages"] += 1
                if self.stored[page]:
                    self.swap.invalidate(page)
                    self.stored[page] = 0
            else:
                self.swap.store(page, data)
                self.stored[page] = 1
        uffd.punch_hole(self.mem_fd, offset, self.ps)

    # --- the loop ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The handler's counters, frontswap's, and the resident page count."""
        out: dict[str, Any] = dict(self.counts)
        out["resident"] = len(self.resident)
        out["resident_limit"] = self.resident_limit
        out["frontswap"] = self.swap.stats()
        return out

    def serve(self, control: socket.socket) -> None:
        """Resolve faults until the control socket says ``stop`` or closes."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(control.fileno(), select.POLLIN)
        pending = b""
        while True:
            for fd, _ in poller.poll():
                if fd == self.fd:
                    self._drain()
                    continue
                chunk = control.recv(4096)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line == b"stop":
                        return
                    if line == b"stats":
                        control.sendall(json.dumps(self.stats()).encode() + b"\n")

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, uffd.MSG_SIZE * 64)
            except BlockingIOError:
                return
            for at in range(0, len(data), uffd.MSG_SIZE):
                self.handle(data[at : at + uffd.MSG_SIZE])

    def close(self) -> None:
        """Release the swap area and the mapping."""
        self.swap.close()
        self.view.close()


def run(client: Client | None, args: dict[str, Any], control: socket.socket) -> int:
    """Serve the region described by ``args`` (from :class:`SwapMemory`); the exit status."""
    try:
        handler = Handler(
            client,
            args["uffd"],
            args["memfd"],
            args["base"],
            args["size"],
            args["resident"],
            args["swap_path"],
            args["write_behind"],
        )
    except (TmemError, OSError) as exc:
        control.sendall(f"error {exc}\n".encode())
        return 1
    control.sendall(b"ready\n")
    try:
        handler.serve(control)
    finally:
        handler.close()
    return 0

"""SwapMemory: memory of any size of which at most N pages are resident, paged through tmem.

Design
------
The region is a memory file (``memfd``) mapped shared into this process and
registered with userfaultfd (missing-page and write-protect faults).  Its
faults are handled in a separate process (:mod:`tmem.frontends.swaphandler`,
started as ``python -m tmem.memory_process``), which keeps at most
``resident_pages`` pages in memory and sends the rest through the frontswap
frontend: tmem's persistent pool, else a swap file.  Any code can use the
region -- ``np.frombuffer(mem.buffer, ...)``, ``memoryview(mem.buffer)``,
ctypes, C extensions -- with no change: a page that is not resident is
brought back by the kernel and the handler when it is touched.

* **Why a process.** A thread that faults while holding Python's GIL (pure
  Python code, numpy, anything) waits in the kernel until the fault is
  resolved; a handler thread in the same interpreter would wait for that GIL
  for ever.  The handler process has its own.
* **Why a memory file.** Eviction frees a page by punching a hole in the
  memory file, which the handler can do for this process; its pages count as
  the machine's ``Shmem`` and this process's ``RssShmem``, at most
  ``resident_pages`` of them.
* **The host** is reached by the handler process through the public client
  API: a daemon (``address``), an embedded host of ``embedded`` bytes inside
  the handler process, or none (``no_tmem=True``: the swap file only, the
  baseline).  A client object cannot cross into another process, so
  SwapMemory takes where to connect, not a client.
* **Loss of the host**: a page only tmem held is gone.  The handler says so
  on stderr and poisons the page; touching it raises SIGBUS, as the kernel
  does for an unreadable swap page.  Never a wrong byte.  With
  ``write_behind=True`` every page is also written to the swap file.
* **Permissions.** userfaultfd needs ``CAP_SYS_PTRACE``, access to
  ``/dev/userfaultfd``, or ``vm.unprivileged_userfaultfd=1``; failing those,
  the user-mode-only mode resolves faults from user code but faults taken
  inside system calls (``os.read`` into the region) fail with ``EFAULT``.
  :class:`~tmem.frontends.uffd.Unavailable` says what the kernel refused.

Known limit: if the handler process dies (it is killed), threads that fault
afterwards wait until :meth:`SwapMemory.close` is called from a thread that
does not fault.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from tmem.errors import InvalidArgument, TmemError
from tmem.frontends import uffd
from tmem.frontends.hostcalls import check_count


class HandlerFailed(TmemError):
    """The fault handler process could not start or stopped answering."""

    code = 21


class SwapMemory:
    """``size`` bytes of memory of which at most ``resident_pages`` pages are resident.

    Exactly one of ``address`` (a daemon), ``embedded`` (a host capacity in
    bytes) or ``no_tmem=True`` says where evicted pages go before the swap
    file (``swap_path``; a temporary file by default).  ``buffer`` is the
    region (an ``mmap``: it supports the buffer protocol).  ``user_mode_only``
    asks for the mode ordinary users get (faults inside system calls fail);
    ``self.user_mode_only`` says which mode was had.
    """

    def __init__(
        self,
        size: int,
        resident_pages: int,
        *,
        address: str | None = None,
        embedded: int | None = None,
        no_tmem: bool = False,
        name: str = "swapmemory",
        swap_path: str | os.PathLike[str] | None = None,
        write_behind: bool = False,
        user_mode_only: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        if type(size) is not int or size < 1:
            raise InvalidArgument(f"size must be an integer >= 1, not {size!r}")
        self.resident_pages = check_count("resident_pages", resident_pages)
        if sum((address is not None, embedded is not None, no_tmem)) != 1:
            raise InvalidArgument("give exactly one of address, embedded and no_tmem=True")
        self.page_size = mmap.PAGESIZE
        self.size = -(-size // self.page_size) * self.page_size
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._uffd = -1
        self._memfd = os.memfd_create("tmem-swapmemory", os.MFD_CLOEXEC)
        try:
            self._uffd, self.user_mode_only = uffd.open_uffd(user_mode_only)
            uffd.api(self._uffd, uffd.FEATURES)
            os.ftruncate(self._memfd, self.size)
            self.buffer = mmap.mmap(self._memfd, self.size, mmap.MAP_SHARED)
            self.address = uffd.address_of(self.buffer)
            uffd.register(
                self._uffd,
                self.address,
                self.size,
                uffd.REGISTER_MODE_MISSING | uffd.REGISTER_MODE_WP,
            )
            if swap_path is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="tmem-swapmemory-")
                swap_path = os.path.join(self._tmpdir.name, "swap")
            self._start(
                {
                    "uffd": self._uffd,
                    "memfd": self._memfd,
                    "base": self.address,
                    "size": self.size,
                    "resident": self.resident_pages,
                    "swap_path": os.fspath(swap_path),
                    "write_behind": write_behind,
                    "address": address,
                    "embedded": embedded,
                    "no_tmem": no_tmem,
                    "name": name,
                },
                start_timeout,
            )
        except BaseException:
            self._release()
            raise

    def _start(self, args: dict[str, Any], timeout: float) -> None:
        ours, theirs = socket.socketpair()
        self._control = ours
        cmd = [sys.executable, "-m", "tmem.memory_process", str(theirs.fileno()), json.dumps(args)]
        self._proc = subprocess.Popen(
            cmd, pass_fds=(theirs.fileno(), self._uffd, self._memfd), stdin=subprocess.DEVNULL
        )
        theirs.close()
        reply = self._reply(timeout)
        if reply != "ready":
            raise HandlerFailed(f"the SwapMemory fault handler did not start: {reply}")

    def _reply(self, timeout: float) -> str:
        assert self._control is not None
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._control], [], [], left)[0]:
                raise HandlerFailed(f"the SwapMemory fault handler did not answer in {timeout}s")
            chunk = self._control.recv(65536)
            if not chunk:
                raise HandlerFailed("the SwapMemory fault handler exited")
            data += chunk
        return data.decode().strip()

    def __len__(self) -> int:
        return self.size

    def stats(self, timeout: float = 30.0) -> dict[str, Any]:
        """The handler's counters (see :data:`tmem.frontends.swaphandler.COUNTERS`).

        ``resident`` pages are in memory now; ``frontswap`` holds the frontswap
        frontend's counters.  Call it from a thread that is not touching the
        region's non-resident pages.
        """
        if self._control is None:
            raise InvalidArgument("this SwapMemory is closed")
        self._control.sendall(b"stats\n")
        result: dict[str, Any] = json.loads(self._reply(timeout))
        return result

    def close(self, timeout: float = 30.0) -> None:
        """Unmap the region, stop the handler and free everything (idempotent).

        Raises ``BufferError`` while arrays or views of ``buffer`` still exist.
        """
        if self._control is None:
            return
        self.buffer.close()  # BufferError while exported; nothing else is touched then
        self._release(timeout)

    def _release(self, timeout: float = 30.0) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.sendall(b"stop\n")
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
            self._proc = None
        if self._control is not None:
            self._control.close()
            self._control = None
        if hasattr(self, "buffer") and not self.buffer.closed:
            with contextlib.suppress(BufferError):
                self.buffer.close()
        for fd in (self._uffd, self._memfd):
            if fd >= 0:
                os.close(fd)
        self._uffd = self._memfd = -1
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> SwapMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

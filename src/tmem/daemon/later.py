"""Replies that complete later: a get of a page below RAM, loaded off the event loop.

A get of a page the host demoted to a tier needs a disk read or a network
round trip (during a cluster failover, retries for seconds).  The loop does
not wait for it: the dispatcher queues no reply but leaves a :class:`Later`
on the session; the server hands it to a :class:`Fetchers` worker and goes on
serving other connections, holding that connection's later requests unread so
that its replies stay in request order.  When the load is done the worker
queues the :class:`Later` and wakes the loop (an eventfd), which then queues the
reply and goes on with the connection's next requests.

The contract is the embedded host's: the load runs outside the host's lock,
and a put or flush of the same handle meanwhile wins (the engine's versions,
see :meth:`tmem.tier.demoter.TierSet.fetch`).  A connection that closes
while its load runs keeps its client (and its private pages) until the load
is done; the reply is dropped.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tmem.errors import TmemError
from tmem.wire.frames import OutBuffer

log = logging.getLogger("tmem.daemon")

#: Worker threads that load pages from tiers, by default.
FETCH_WORKERS = 4


class Later:
    """A request whose reply waits for ``work`` (which may block); ``reply(result, out)``
    then queues the reply in the loop's thread."""

    __slots__ = ("op", "tag", "work", "reply", "result", "error", "fault", "owner")

    def __init__(
        self, op: int, work: Callable[[], Any], reply: Callable[[Any, int, OutBuffer], None]
    ) -> None:
        self.op = op
        self.tag = 0  # set by the dispatcher
        self.work = work
        self.reply = reply
        self.result: Any = None
        self.error: TmemError | None = None  # the contract's error: an error reply
        self.fault: Exception | None = None  # a fault of ours: the connection closes
        self.owner: Any = None  # whom the server finishes it for (its connection)

    def run(self) -> None:
        """Do the work (in a worker thread), keeping its result or error."""
        try:
            self.result = self.work()
        except TmemError as exc:
            self.error = exc
        except Exception as exc:  # reported by the loop, which closes the connection
            self.fault = exc
        self.work = _done  # what it refers to (buffers, the client) is not kept longer


def _done() -> None:
    pass


class Fetchers:
    """A bounded pool of worker threads running :class:`Later` work, and the eventfd
    through which they wake the loop."""

    def __init__(self, workers: int = FETCH_WORKERS) -> None:
        self.workers = workers
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="tmem-fetch")
        self._done: collections.deque[Later] = collections.deque()
        self._lock = threading.Lock()  # the counts, read by stats from any thread
        self.started = 0  # handed to the workers, ever
        self.in_flight = 0  # handed and not yet taken back by the loop
        self.most = 0  # the most in flight at once

    def start(self, later: Later) -> None:
        """Run ``later`` in a worker; it comes back from :meth:`finished`."""
        with self._lock:
            self.started += 1
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        self._pool.submit(self._run, later)

    def _run(self, later: Later) -> None:
        later.run()
        self._done.append(later)
        os.eventfd_write(self.fd, 1)

    def finished(self) -> list[Later]:
        """The work done since the last call (called by the loop when ``fd`` is readable)."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)
        done = []
        while self._done:
            done.append(self._done.popleft())
        with self._lock:
            self.in_flight -= len(done)
        return done

    def stats(self) -> dict[str, int]:
        """Workers, loads handed to them in all, in flight now, and the most at once."""
        with self._lock:
            return {
                "fetch_workers": self.workers,
                "fetches": self.started,
                "fetches_in_flight": self.in_flight,
                "fetches_most_in_flight": self.most,
            }

    def close(self) -> list[Later]:
        """Wait for the work under way (each tier bounds a load's time); what finished."""
        self._pool.shutdown(wait=True)
        done = self.finished()
        os.close(self.fd)
        return done

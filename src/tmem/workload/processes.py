"""Guests as processes, each a client of a tmem daemon over its Unix socket.

The same run as :mod:`tmem.workload.runner`, but every guest is its own
process (``spawn``) that reaches the host with ``tmem.connect("unix:...")``:
pages cross the wire protocol and the daemon's event loop.  The daemon is
``tmem serve`` with the configuration's capacity and store, started as a user
would; the guests and this process meet at two barriers after every step,
between which this process samples the guests' reads (shared memory) and the
host's statistics (``tmem.admin``).

The CPU time per I/O saved counts only the guest's side of each call
(encoding, the socket, waiting is not CPU); the daemon's own work is not in it.
"""

from __future__ import annotations

import multiprocessing
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tmem
from tmem.workload.config import Configuration
from tmem.workload.errors import WorkloadError
from tmem.workload.model import ConfigResult, Prepared, Progress, make_guest, not_for

#: Longest wait at a barrier, or for a guest's result (seconds): a guest that died is an error.
TIMEOUT = 300.0


def run_configuration_processes(
    prepared: Prepared, config: Configuration, workdir: Path, progress: Progress | None = None
) -> ConfigResult:
    """Replay every guest under ``config`` in its own process; return the counters."""
    result = ConfigResult(config)
    result.unavailable = not_for(prepared.spec, config)
    if result.unavailable is None and config.balloon:
        result.unavailable = "self-ballooning guests run as threads only"
    elif result.unavailable is None and config.eviction != "lru":
        result.unavailable = "tmem serve has no eviction option: guests as threads only"
    if result.unavailable:
        return result
    # Unix socket paths are short: the socket gets a directory of its own under /tmp.
    with tempfile.TemporaryDirectory(prefix="tmem-wl-") as sockdir, _daemon(
        config, Path(sockdir) / "tmem.sock", result
    ) as (address, host):
        if result.unavailable:
            return result
        try:
            started = time.perf_counter()
            guests = _Guests(prepared, config, address, workdir)
            try:
                _drive(guests, prepared, config, host, result, progress)
                result.close(guests.results(), time.perf_counter() - started)
            finally:
                guests.stop()
        finally:
            for path in workdir.glob(f"{config.name}-*"):
                path.unlink()
    return result


@contextmanager
def _daemon(
    config: Configuration, socket: Path, result: ConfigResult
) -> Iterator[tuple[str | None, Any]]:
    """``tmem serve`` for ``config`` on ``socket``: yield its address and an admin handle.

    Yields ``(None, None)`` for a configuration without tmem, and also when the
    daemon cannot start, with ``result.unavailable`` saying why.
    """
    if not config.uses_tmem:
        yield None, None
        return
    command = [sys.executable, "-m", "tmem", "serve", "--socket", str(socket)]
    command += ["--capacity", str(config.host_bytes), "--log-level", "warning"]
    command += ["--compress", config.compress or "none", "--dedup", config.dedup or "none"]
    command += ["--host-policy", config.policy, "--host-order", config.order]
    command += ["--idle-timeout", "0"]
    for tier in config.tiers:
        command += ["--tier", tier]
    log = socket.with_name("tmem-serve.log")  # stderr to a file: a pipe could fill and block it
    with log.open("w+") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            admin = _admin_when_ready(proc, str(socket))
            if admin is None:
                proc.wait(10)
                err.seek(0)
                result.unavailable = err.read().strip() or "tmem serve did not start"
                yield None, None
                return
            try:
                yield str(socket), admin
            finally:
                admin.close()
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the daemon as its service manager would (SIGTERM), killing it if it hangs."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _admin_when_ready(proc: subprocess.Popen[bytes], socket: str) -> Any:
    """An admin handle once the daemon answers, or None if it exited first."""
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            return tmem.admin(socket)
        except tmem.ConnectionLost:
            time.sleep(0.02)
    return None


def _drive(
    guests: _Guests,
    prepared: Prepared,
    config: Configuration,
    host: Any,
    result: ConfigResult,
    progress: Progress | None,
) -> None:
    """Meet the guests after each step, sample, and tell them when all are done."""
    budget, expected = prepared.spec.step_pages, prepared.steps
    while True:
        guests.wait(guests.arrive)
        result.sample(budget, guests.io[:], host.stats() if host is not None else None)
        if progress is not None:
            progress(config.name, len(result.steps), max(expected, len(result.steps)))
        if all(guests.done[:]):
            guests.stop_flag.value = 1
        guests.wait(guests.leave)
        if guests.stop_flag.value:
            return


class _Guests:
    """The guest processes and what they share with this one."""

    def __init__(
        self, prepared: Prepared, config: Configuration, address: str | None, workdir: Path
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        n = len(prepared.layouts)
        self.arrive = ctx.Barrier(n + 1)
        self.leave = ctx.Barrier(n + 1)
        self.io = ctx.Array("q", n)
        self.done = ctx.Array("b", n)
        self.stop_flag = ctx.Value("b", 0)
        self.queue = ctx.Queue()
        shared = (self.arrive, self.leave, self.io, self.done, self.stop_flag, self.queue)
        self.procs = [
            ctx.Process(
                target=guest_main,
                args=(prepared, config, i, address, workdir, shared),
                name=f"guest{i}",
                daemon=True,
            )
            for i in range(n)
        ]
        for proc in self.procs:
            proc.start()

    def wait(self, barrier: Any) -> None:
        """Wait at ``barrier``; a broken one means a guest failed: raise its error."""
        try:
            barrier.wait(TIMEOUT)
        except threading.BrokenBarrierError:
            raise self._failure() from None

    def _failure(self) -> WorkloadError:
        try:
            while True:
                _, counters, error = self.queue.get(timeout=5)
                if error:
                    return WorkloadError(error)
        except queue.Empty:
            return WorkloadError("a guest process stopped without a word")

    def results(self) -> list[dict[str, int]]:
        """Every guest's final counters, in guest order."""
        out: dict[int, dict[str, int]] = {}
        while len(out) < len(self.procs):
            try:
                i, counters, error = self.queue.get(timeout=TIMEOUT)
            except queue.Empty:
                raise WorkloadError("a guest process did not report its counters") from None
            if error:
                raise WorkloadError(error)
            out[i] = counters
        return [out[i] for i in range(len(self.procs))]

    def stop(self) -> None:
        """Break the barriers for anyone still waiting, and end every process."""
        self.arrive.abort()
        self.leave.abort()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def guest_main(
    prepared: Prepared,
    config: Configuration,
    i: int,
    address: str | None,
    workdir: Path,
    shared: tuple[Any, ...],
) -> None:
    """A guest process: connect, replay step by step in time with the others, report."""
    arrive, leave, io, done, stop_flag, results = shared
    client = tmem.connect(address, name=f"guest{i}") if address else None
    try:
        guest = make_guest(prepared, config, client, i, workdir)
        budget, delay = prepared.spec.step_pages, prepared.spec.guests[i].delay
        steps = 0
        while True:
            if not guest.done and steps * budget >= delay:
                guest.step(budget)
                if guest.done:
                    guest.finish()
            io[i], done[i] = guest.io_so_far(), guest.done
            arrive.wait(TIMEOUT)
            leave.wait(TIMEOUT)
            steps += 1
            if stop_flag.value:
                break
        results.put((i, guest.finish(), None))
    except threading.BrokenBarrierError:
        pass  # another guest failed and reported it
    except BaseException as exc:
        results.put((i, None, f"guest{i}: {type(exc).__name__}: {exc}"))
        arrive.abort()
        leave.abort()
    finally:
        if client is not None:
            client.close()

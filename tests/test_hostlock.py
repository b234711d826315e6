"""The host's compiled lock (``tmem._hostlock.Lock``) behaves as ``threading.Lock``.

Every check runs on both, so a difference shows as one of them failing.
Where the extension was not built the compiled half is skipped, unless CI
expects the compiled build (``TMEM_EXPECT_COMPILED=1``): then it must be there.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time

import pytest

import tmem
from tmem import hostlock


def _compiled_lock():
    try:
        return importlib.import_module("tmem._hostlock").Lock
    except ImportError:
        if os.environ.get("TMEM_EXPECT_COMPILED") == "1":
            raise
        pytest.skip("tmem._hostlock was not built")


@pytest.fixture(params=["threading", "compiled"])
def make_lock(request):
    return threading.Lock if request.param == "threading" else _compiled_lock()


def test_acquire_release_and_locked(make_lock):
    lock = make_lock()
    assert not lock.locked()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(False) is False and lock.acquire(blocking=False) is False
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_timeout_is_waited_for_and_bad_ones_are_refused(make_lock):
    lock = make_lock()
    lock.acquire()
    start = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert time.monotonic() - start >= 0.04
    assert lock.acquire(True, 0) is False
    with pytest.raises(ValueError):
        lock.acquire(False, 1)  # a timeout on a non-blocking call
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    with pytest.raises(TypeError):
        lock.acquire(whenever=True)
    lock.release()
    assert lock.acquire(timeout=0.05) is True


def test_a_waiting_thread_gets_the_lock_when_it_is_released(make_lock):
    lock = make_lock()
    lock.acquire()
    got = threading.Event()

    def waiter():
        with lock:
            got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not got.wait(0.1)  # blocked, and not holding the interpreter meanwhile
    lock.release()
    assert got.wait(5)
    thread.join()


def test_threads_never_hold_it_together(make_lock):
    lock = make_lock()
    count = [0]

    def work():
        for _ in range(300):
            with lock:
                seen = count[0]
                time.sleep(0)  # lets another thread run inside, were the lock not held
                count[0] = seen + 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count[0] == 1200


def test_a_signal_handler_runs_during_a_blocked_acquire(make_lock):
    lock = make_lock()
    lock.acquire()

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
    start = time.monotonic()
    try:
        timer.start()
        with pytest.raises(Interrupted):
            lock.acquire(timeout=10)
        assert time.monotonic() - start < 5  # the handler ran during the wait, not after it
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    lock.release()


def test_a_host_uses_the_compiled_lock_where_it_was_built():
    lock = tmem.Host(capacity=1 << 20).lock
    if hostlock.FAST_LOCK is None:
        assert isinstance(lock, type(threading.Lock()))
    else:
        assert type(lock) is _compiled_lock()

"""Run a piece of work in several threads at once, for the tests of shared objects."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_threads(work: Callable[[int], None], n: int = 4, timeout: float = 120) -> None:
    """Run ``work(i)`` for ``i`` in ``range(n)``, each in its own thread, started together;
    fail if any raised or is still running after ``timeout`` seconds."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def guarded(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors

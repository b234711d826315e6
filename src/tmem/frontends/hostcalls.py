"""What the frontends share around their tmem calls.

A frontend keeps its own fallback (the disk, the swap file), so a host that
went away (:class:`tmem.ConnectionLost`) or took the pool with it
(:class:`tmem.NoSuchPool`) ends the use of that pool, not the program:
:func:`host_lost` is that guard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from tmem.api import Client
from tmem.errors import ConnectionLost, InvalidArgument, NoSuchPool


class host_lost:  # noqa: N801 -- a context manager named like contextlib.suppress
    """Run the block; if the host or the pool is gone, call ``on_lost(*args)`` and go on.

    Assign the call's answer inside the block and its fallback before it::

        page = None
        with host_lost(self._lose_pool, pool):
            page = client.get_page(pool, oid, index)

    A class rather than a generator, and reusable: a frontend makes its guards
    once and enters them around every tmem call (``with self._guard:``).
    """

    __slots__ = ("_on_lost", "_args")

    def __init__(self, on_lost: Callable[..., None], *args: Any) -> None:
        self._on_lost = on_lost
        self._args = args

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> bool:
        if kind is not None and issubclass(kind, (ConnectionLost, NoSuchPool)):
            self._on_lost(*self._args)
            return True
        return False


def check_count(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise InvalidArgument naming it."""
    if type(value) is not int or value < 1:
        raise InvalidArgument(f"{name} must be an integer >= 1, not {value!r}")
    return value


def destroy_quietly(client: Client | None, pool: int | None) -> None:
    """Destroy ``pool`` if there is one; a pool already gone with its host is no error."""
    if client is None or pool is None:
        return
    with contextlib.suppress(ConnectionLost, NoSuchPool):
        client.destroy_pool(pool)

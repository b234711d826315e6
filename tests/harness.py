"""Hosts for the contract suite: each kind of host behind one small interface.

A harness builds a host of a given capacity and connects clients to it; the
contract tests use only :class:`tmem.api.Client` and :class:`tmem.api.Admin`
through it, so the same tests run against every kind of host.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import tmem
from tmem.api import Admin, Client


class EmbeddedHarness:
    """An in-process :class:`tmem.Host`."""

    kind = "embedded"

    def __init__(self, capacity: int, **host_options: Any) -> None:
        self.host = tmem.Host(capacity, **host_options)
        self.admin: Admin = self.host

    def connect(self, name: str, weight: int = 1, cap: int | None = None) -> Client:
        """A new client of the host."""
        return self.host.connect(name, weight=weight, cap=cap)

    def close(self) -> None:
        """Release the host."""


class DaemonHarness:
    """A daemon serving a :class:`tmem.Host` on a temporary Unix socket.

    The daemon's loop runs in a thread of the test process; clients and the
    admin reach it only through the socket, with the wire protocol.
    """

    kind = "daemon"

    def __init__(self, capacity: int, **host_options: Any) -> None:
        from tmem.daemon.config import Config
        from tmem.daemon.server import Server, run_in_thread

        self._dir = tempfile.mkdtemp(prefix="tmem-test-")
        config = Config(socket=os.path.join(self._dir, "tmem.sock"))
        self.server = Server(config, host=tmem.Host(capacity, **host_options))
        self._thread = run_in_thread(self.server)
        self.address = self.server.address
        self.admin: Admin = tmem.admin(self.address)
        self._clients: list[Any] = []

    def connect(self, name: str, weight: int = 1, cap: int | None = None) -> Client:
        """A new client of the daemon, with its weight and cap set by the admin."""
        client = tmem.connect(self.address, name=name)
        self._clients.append(client)
        if weight != 1 or cap is not None:
            self.admin.set_client(name, weight=weight, cap=cap)
        return client

    def close(self) -> None:
        """Disconnect everyone and stop the daemon."""
        try:
            for client in self._clients:
                client.close()
            self.admin.close()  # type: ignore[attr-defined]
        finally:
            self.server.stop()
            self._thread.join(10)
            shutil.rmtree(self._dir, ignore_errors=True)


#: kind name -> harness class; other kinds of host register here.
class ShareEmbeddedHarness(EmbeddedHarness):
    """An in-process host under the older eviction policy (``policy="share"``)."""

    kind = "embedded-share"

    def __init__(self, capacity: int, **host_options: Any) -> None:
        super().__init__(capacity, **{"policy": "share", **host_options})


HARNESSES: dict[str, type] = {
    "embedded": EmbeddedHarness,
    "embedded-share": ShareEmbeddedHarness,
    "daemon": DaemonHarness,
}

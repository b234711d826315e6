"""Hosts for the contract suite: each kind of host behind one small interface.

A harness builds a host of a given capacity and connects clients to it; the
contract tests use only :class:`tmem.api.Client` and :class:`tmem.api.Admin`
through it, so the same tests run against every kind of host.
"""

from __future__ import annotations

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


#: kind name -> harness class; other kinds of host register here.
HARNESSES: dict[str, type] = {"embedded": EmbeddedHarness}

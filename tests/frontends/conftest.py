"""Fixtures for the frontend tests: real hosts, and a client whose host can be lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tmem
from tests.harness import HARNESSES


class LosableClient:
    """Wraps a real client; after :meth:`lose`, every call raises ConnectionLost.

    It stands for a remote client whose daemon went away.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.lost = False

    def lose(self) -> None:
        """From now on the host is gone."""
        self.lost = True
        self._client.close()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.lost:
                raise tmem.ConnectionLost("the tmem daemon went away")
            return attr(*args, **kwargs)

        return call


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A raw (uncompressed) host of each kind, 64 MiB, so every page fits and is kept."""
    made = HARNESSES[request.param](64 << 20, compress=None, dedup=None)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def client(harness: Any) -> Any:
    """A client of the raw host."""
    return harness.connect("frontend")

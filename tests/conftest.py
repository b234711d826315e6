from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.harness import HARNESSES


@pytest.fixture(params=sorted(HARNESSES))
def make_host(request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """Build hosts of the parametrized kind; all are closed after the test."""
    made = []

    def make(capacity: int = 64 << 20, **options: object) -> object:
        harness = HARNESSES[request.param](capacity, **options)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import HARNESSES

# Property tests check behaviour, not speed: on a loaded machine a single example
# may take longer than hypothesis's default 200 ms deadline.
settings.register_profile("tmem", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tmem")


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

"""The host's sizing law steps as documented, for given signal sequences."""

from __future__ import annotations

import random

import pytest

from tmem.control import HostLaw, HostTunables, MemorySignal
from tmem.errors import InvalidArgument

M = 1 << 20
TOTAL = 1000 * M  # min_free 100 MiB, grow_free 200 MiB


def law(**changes: object) -> HostLaw:
    return HostLaw(HostTunables(floor=16 * M).with_values(changes))


def sig(available_mib: float, pressure: float | None = None) -> MemorySignal:
    return MemorySignal(TOTAL, int(available_mib * M), pressure)


def test_short_gives_back_the_deficit_or_the_backoff_at_once() -> None:
    step = law().step(sig(60), capacity=300 * M, used=280 * M)
    assert (step.reason, step.wanted) == ("short", 40 * M)
    assert step.capacity == 280 * M - 70 * M  # backoff (a quarter of 280) beats the deficit
    step = law().step(sig(0), capacity=300 * M, used=280 * M)
    assert step.capacity == 280 * M - 100 * M  # the deficit beats the backoff


def test_short_never_goes_below_the_floor() -> None:
    step = law().step(sig(0), capacity=40 * M, used=40 * M)
    assert step.capacity == 16 * M


def test_pressure_alone_backs_off_and_without_psi_only_memavailable_counts() -> None:
    step = law().step(sig(500, pressure=0.05), capacity=300 * M, used=300 * M)
    assert (step.reason, step.capacity, step.wanted) == ("pressure", 225 * M, 0)
    assert law().step(sig(500, pressure=None), capacity=300 * M, used=300 * M).reason == "hold"
    assert law().step(sig(500, pressure=0.005), capacity=300 * M, used=300 * M).reason == "hold"


def test_grows_slowly_after_calm_intervals_only_when_used() -> None:
    host = law()
    capacity = 100 * M
    steps = [host.step(sig(600), capacity, used=capacity) for _ in range(4)]
    assert [s.reason for s in steps] == ["hold", "hold", "hold", "grow"]
    # the surplus above grow_free is 400 MiB: an eighth is 50 MiB, above 2% of the machine
    assert steps[-1].capacity == 100 * M + 20 * M
    host = law(grow_limit=1.0)
    for _ in range(3):
        host.step(sig(600), capacity, used=capacity)
    assert host.step(sig(600), capacity, used=capacity).capacity == 150 * M
    idle = law()
    assert all(
        idle.step(sig(600), capacity, used=capacity // 2).reason == "hold" for _ in range(10)
    )


def test_never_above_the_ceiling() -> None:
    host = law(ceiling="110M", grow_after=0)
    assert host.step(sig(900), 100 * M, 100 * M).capacity == 110 * M
    assert host.step(sig(900), 110 * M, 110 * M).reason == "hold"
    assert law(grow_after=0).step(sig(900), 499 * M, 499 * M).capacity == 500 * M  # half


def test_noise_inside_the_dead_band_changes_nothing() -> None:
    rng = random.Random(18)
    host, capacity = law(), 300 * M
    for _ in range(200):
        step = host.step(sig(rng.uniform(101, 199), rng.uniform(0, 0.009)), capacity, capacity)
        assert step == step.__class__(capacity, "hold")


def test_oscillating_signal_never_flaps() -> None:
    """Short and plentiful in turn: the capacity only ever goes down, and grows again
    only ``grow_after`` calm intervals after the oscillation stops."""
    host, capacity, seen = law(), 400 * M, []
    for i in range(40):
        step = host.step(sig(95 if i % 2 else 600), capacity, capacity)
        seen.append(step.capacity)
        capacity = step.capacity
    assert all(b <= a for a, b in zip(seen, seen[1:], strict=False))
    calm = [host.step(sig(600), capacity, capacity).reason for _ in range(4)]
    assert calm == ["hold", "hold", "hold", "grow"]


def test_noisy_pressure_spikes_each_back_off_once() -> None:
    """A noisy PSI that crosses the limit now and then: one back-off per spike, and the
    hysteresis (grow_after) keeps the capacity from climbing back between spikes."""
    rng = random.Random(7)
    host, capacity = law(grow_after=5), 400 * M
    history = []
    for i in range(60):
        pressure = 0.05 if i % 4 == 0 else rng.uniform(0, 0.005)
        step = host.step(sig(600, pressure), capacity, capacity)
        history.append(step.reason)
        capacity = step.capacity
    assert history.count("pressure") == 15
    assert "grow" not in history


def test_tunables_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="min_free"):
        HostTunables(min_free=1.5)
    with pytest.raises(InvalidArgument, match="grow_free"):
        HostTunables(min_free=0.3, grow_free=0.2)
    with pytest.raises(InvalidArgument, match="ceiling"):
        HostTunables(floor=64 * M, ceiling=32 * M)
    with pytest.raises(InvalidArgument, match="unknown tunable 'speed'"):
        HostTunables().with_values({"speed": 2})
    with pytest.raises(InvalidArgument, match="not a number"):
        HostTunables().with_values({"backoff": "lots"})
    assert HostTunables().with_values({"grow-after": "5", "floor": "1M"}).grow_after == 5

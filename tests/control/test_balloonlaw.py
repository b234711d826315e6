"""The self-balloon's law steps as documented, for given cache signals."""

from __future__ import annotations

import random

import pytest

from tmem.control import BalloonLaw, BalloonTunables, CacheSignal
from tmem.errors import InvalidArgument


def sig(pages: int, touched: int, reads: int = 0, refaults: int = 0, ceiling: int | None = None):
    return CacheSignal(pages, reads or touched, touched, refaults, ceiling)


def test_shrinks_slowly_toward_the_working_set() -> None:
    law, pages, sizes = BalloonLaw(1000), 1000, []
    for _ in range(60):
        pages = law.step(sig(pages, 200))
        sizes.append(pages)
    assert sizes[:3] == [900, 813, 737]  # 1/8 of the gap to 200 each step (downhysteresis)
    assert all(b <= a for a, b in zip(sizes, sizes[1:], strict=False))
    assert 200 <= sizes[-1] <= 207  # the gap closes to under downhysteresis pages


def test_grows_at_once_when_tmem_answers_many_reads() -> None:
    law = BalloonLaw(1000)
    assert law.step(sig(200, touched=200, reads=1000, refaults=100)) == 300  # uphysteresis 1
    slow = BalloonLaw(1000, BalloonTunables(uphysteresis=4))
    assert slow.step(sig(200, touched=200, reads=1000, refaults=100)) == 225
    few = BalloonLaw(1000)  # 1% refaults: below refault_high, shrink as usual
    assert few.step(sig(400, touched=200, reads=1000, refaults=10)) == 375


def test_bounds() -> None:
    law = BalloonLaw(500, BalloonTunables(min_usable=64))
    pages = 300
    for _ in range(50):
        pages = law.step(sig(pages, touched=0))
    assert 64 <= pages < 64 + 8  # min_usable, to within a downhysteresis step
    assert law.step(sig(71, touched=0)) == 71  # a gap under 8 pages moves nothing
    assert law.step(sig(480, touched=400, reads=400, refaults=300)) == 500  # max_pages
    assert BalloonLaw(500).step(sig(400, touched=400, ceiling=120)) == 120  # at once


def test_oscillating_working_set_does_not_flap() -> None:
    law, pages, sizes = BalloonLaw(1000), 1000, []
    for i in range(80):
        pages = law.step(sig(pages, 300 if i % 2 else 600))
        sizes.append(pages)
    assert all(b <= a for a, b in zip(sizes, sizes[1:], strict=False))
    assert 600 <= sizes[-1] <= 608


def test_noisy_working_set_moves_no_more_than_its_noise() -> None:
    rng = random.Random(18)
    law, pages, sizes = BalloonLaw(1000), 1000, []
    for _ in range(200):
        pages = law.step(sig(pages, rng.randint(380, 420)))
        sizes.append(pages)
    settled = sizes[100:]
    assert min(settled) >= 380 and max(settled) <= 428
    changes = sum(1 for a, b in zip(settled, settled[1:], strict=False) if b > a)
    assert changes <= len(settled) // 4  # a rare step back up, when the window's peak grows


def test_tunables_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="downhysteresis"):
        BalloonTunables(downhysteresis=0)
    with pytest.raises(InvalidArgument, match="interval"):
        BalloonTunables(interval=0)
    with pytest.raises(InvalidArgument, match="max_pages"):
        BalloonLaw(0)
    assert BalloonTunables().with_values({"min-usable": "32"}).min_usable == 32

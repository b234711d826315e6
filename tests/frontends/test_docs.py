"""The frontends' documentation lists every counter the frontends report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmem.frontends import cleancache, frontswap

DOC = Path(__file__).resolve().parents[2] / "docs" / "frontends.md"


@pytest.mark.parametrize("counters", [cleancache.COUNTERS, frontswap.COUNTERS])
def test_every_counter_has_a_row_in_the_docs(counters: tuple[str, ...]) -> None:
    text = DOC.read_text()
    missing = [name for name in counters if f"| `{name}` |" not in text]
    assert missing == []

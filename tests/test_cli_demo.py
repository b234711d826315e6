"""The demo command: two guests by weight on an embedded host."""

from __future__ import annotations

import re

from click.testing import CliRunner

from tmem.cli import main


def test_demo_shows_the_heavier_guest_keeping_more_pages_and_swap_intact():
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    rows = dict(re.findall(r"│\s+(vm\d)\s+│\s+\d+\s+│\s+(\d+)\s+│", result.output))
    assert int(rows["vm2"]) > 2 * int(rows["vm1"]) > 0
    assert result.output.count("True") == 2 and "evictions" in result.output


def test_demo_rejects_a_bad_capacity():
    result = CliRunner().invoke(main, ["demo", "--capacity", "lots"])
    assert result.exit_code != 0 and "not a size" in result.output

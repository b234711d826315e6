"""``tmem bench workload`` from the command line: JSON, plots, and clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tmem.cli import main

TINY = ["--guest", "lirs-multi1:0:1500", "--guest", "lirs-sprite:0:1500@256", "-m", "16"]


def test_json_output_has_every_configuration_and_scenario():
    args = ["bench", "workload", *TINY, "-t", "128K", "--json", "--step", "256"]
    result = CliRunner().invoke(main, [*args, "--config", "static", "--config", "tmem"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"cleancache", "frontswap"}
    for summary in data.values():
        assert [c["name"] for c in summary["configurations"]] == ["static", "tmem"]
        assert [g["spec"] for g in summary["guests"]] == [
            "lirs-multi1:0:1500",
            "lirs-sprite:0:1500@256",
        ]
        static, tmem = summary["configurations"]
        assert static["private_pages"] == 16 + 128 * 1024 // 2 // 4096
        assert (
            tmem["total"]["reads_avoided"]
            == static["total"]["disk_reads"] - tmem["total"]["disk_reads"]
        )


def test_tables_and_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    args = ["bench", "workload", *TINY, "--scenario", "cleancache", "--plots", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--config", "static", "--config", "tmem"])
    assert result.exit_code == 0, result.output
    assert "cleancache: all configurations" in result.stdout
    for name in ("workload-cleancache-disk-reads.png", "workload-cleancache-host-share.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--guest", "no-such-trace"], "no trace"),
        (["--guest", "lirs-multi1:99999999"], "cannot start"),
        (["--spare", "lots"], "not a size"),
        (["-m", "0"], "private pages"),
    ],
)
def test_bad_input_is_a_message_and_a_nonzero_exit(args, message):
    result = CliRunner().invoke(main, ["bench", "workload", *args, "--scenario", "cleancache"])
    assert result.exit_code != 0
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback

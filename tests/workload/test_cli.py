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


def test_json_records_the_options_versions_ideal_and_share_of_the_ideal():
    import platform

    import tmem

    args = ["bench", "workload", *TINY, "-t", "128K", "--json", "--scenario", "cleancache"]
    result = CliRunner().invoke(main, [*args, "--config", "static", "--config", "tmem"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["cleancache"]
    run = summary["run"]
    assert run["tmem_version"] == tmem.__version__
    assert run["python_version"] == platform.python_version()
    assert run["options"]["private_pages"] == 16 and run["options"]["spare_bytes"] == 128 << 10
    assert run["options"]["guests"] == ["lirs-multi1:0:1500", "lirs-sprite:0:1500@256"]
    static, tmem_entry = summary["configurations"]
    ideal = summary["ideal"]
    # The simulated static split is the measured one: same references, same LRU.
    assert ideal["static"]["disk_reads"] == static["total"]["disk_reads"]
    assert ideal["global_lru"]["disk_reads"] <= static["total"]["disk_reads"]
    gain = static["total"]["disk_reads"] - ideal["global_lru"]["disk_reads"]
    saved = static["total"]["disk_reads"] - tmem_entry["total"]["disk_reads"]
    assert tmem_entry["total"]["ideal_share"] == saved / gain


def test_the_report_says_what_it_compares_and_ends_with_a_verdict():
    args = ["bench", "workload", *TINY, "-t", "128K", "--scenario", "cleancache"]
    result = CliRunner().invoke(main, [*args, "--config", "static", "--config", "tmem"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "every configuration has the same memory" in out
    assert "ideal: one global LRU" in out
    assert out.rstrip().splitlines()[-1].startswith("verdict:") or "verdict:" in out[-400:]
    assert "read least" in out


def test_plots_without_matplotlib_fail_before_the_run(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    ran = []
    monkeypatch.setattr("tmem.workload.cli._run", lambda *a: ran.append(a))
    args = ["bench", "workload", *TINY, "--scenario", "cleancache", "--plots", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "matplotlib" in result.output
    assert not ran

"""``tmem top``'s rows: rates are differences between two readings, over the time between."""

from __future__ import annotations

from tmem.control.top import client_rows


def _stats(puts: int, gets: int, hits: int, used: int = 1000) -> dict:
    client = {"bytes": 250, "pages": 2, "puts": puts, "gets": gets, "succ_gets": hits,
              "frozen": False}  # fmt: skip
    return {"bytes": used, "clients": {"vm1": client}}


def test_rates_come_from_two_readings_and_the_time_between():
    (row,) = client_rows(_stats(100, 40, 10), _stats(300, 140, 60), 2.0)
    assert (row["puts_per_s"], row["gets_per_s"]) == (100.0, 50.0)
    assert row["share"] == 0.25 and row["hit_ratio"] == 60 / 140


def test_a_first_reading_or_a_new_client_has_no_rate_yet():
    (row,) = client_rows(None, _stats(300, 140, 60), 1.0)
    assert (row["puts_per_s"], row["gets_per_s"]) == (0.0, 0.0)
    (row,) = client_rows({"clients": {}}, _stats(300, 0, 0), 1.0)
    assert row["puts_per_s"] == 0.0 and row["hit_ratio"] == 0.0

"""One rule for which power column to read: instant, then averaged, then the estimate (never an
estimate where only measurements will do), on rows of the real H100 capture."""

from __future__ import annotations

import math

import pandas as pd

from wattprof import schema
from wattprof.clock import ManualClock
from wattprof.collectors.nvml import NvmlReplayCollector
from wattprof.power_columns import (
    MEASURED_POWER,
    POWER_PREFERENCE,
    POWER_SOURCE,
    preferred_power_column,
    row_power,
)


def h100_rows(h100, n: int = 50) -> pd.DataFrame:
    raw = pd.read_csv(h100 / "nvml_samples_10ms.csv")
    clock = ManualClock(raw.t.iloc[0])
    c = NvmlReplayCollector(clock=clock, trace=str(h100 / "nvml_samples_10ms.csv"), start="trace")
    c.open()
    rows = []
    for i in range(n):
        clock.set(raw.t.iloc[0] + 0.1 * i)
        rows += c.read()
    c.close()
    return pd.DataFrame(rows)


def test_instant_power_first_then_averaged_then_the_estimate(h100):
    df = h100_rows(h100)
    assert df.power_w.notna().all() and df.power_avg_w.notna().all()
    assert preferred_power_column(df) == "power_w"
    no_instant = df.assign(power_w=math.nan)
    assert preferred_power_column(no_instant) == "power_avg_w"
    estimate_only = df.drop(columns=["power_w", "power_avg_w"]).assign(power_est_w=120.0)
    assert preferred_power_column(estimate_only) == "power_est_w"
    assert preferred_power_column(estimate_only, measured_only=True) is None  # never an estimate as a measurement
    # a column with too few values is passed over when asked for a minimum
    sparse = df.assign(power_w=[df.power_w.iloc[0]] + [math.nan] * (len(df) - 1))
    assert preferred_power_column(sparse) == "power_w"
    assert preferred_power_column(sparse, min_values=10) == "power_avg_w"


def test_one_row_gives_its_best_finite_reading(h100):
    row = h100_rows(h100, 1).iloc[0].to_dict()
    assert row_power(row) == (row["power_w"], "power_w")
    assert row_power({**row, "power_w": math.nan}) == (row["power_avg_w"], "power_avg_w")
    assert row_power({"device": "host", "power_est_w": 42.0}) == (42.0, "power_est_w")
    assert row_power({"device": "host", "power_est_w": 42.0}, measured_only=True) is None
    assert row_power({"device": "gpu:0"}) is None


def test_the_columns_and_their_sources_agree_with_the_schema():
    assert set(POWER_PREFERENCE) <= set(schema.METRICS)
    assert MEASURED_POWER == POWER_PREFERENCE[:2] and "power_est_w" not in MEASURED_POWER
    assert POWER_SOURCE == {col: src for src, col in schema.SOURCE_COLUMN.items() if col in POWER_PREFERENCE}

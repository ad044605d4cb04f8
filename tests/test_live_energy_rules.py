"""Live energy has one home (analysis/integrate.py): the status line and the Prometheus endpoint
accumulate the real H100 trace reading by reading exactly as the report's curves integrate it."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import H100, fixture_dir

from wattprof.analysis import energy as energy_mod
from wattprof.analysis.integrate import EnergyAccumulator, latest_power
from wattprof.exporters import prometheus


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    raw = pd.read_csv(fixture_dir(H100) / "nvml_samples_10ms.csv")
    return pd.DataFrame({"t": raw["t"], "energy_j": raw["energy_mj"] / 1e3, "power_w": raw["power_instant_mw"] / 1e3,
                         "power_avg_w": raw["power_average_mw"] / 1e3})


def _feed(acc: EnergyAccumulator, rows: list[dict]) -> None:
    for row in rows:
        acc.observe({"gpu:0": row})


def test_reading_by_reading_equals_the_reports_curves_on_the_h100_trace(trace: pd.DataFrame) -> None:
    t = trace["t"].to_numpy()
    counter = EnergyAccumulator()
    _feed(counter, trace[["t", "energy_j", "power_w"]].to_dict("records"))
    _, e, _ = energy_mod.counter_curve(t, trace["energy_j"].to_numpy())
    assert counter.state()["gpu:0"].source == "counter"
    assert counter.state()["gpu:0"].energy_j == pytest.approx(e[-1] - e[0], rel=1e-12)
    power = EnergyAccumulator()
    _feed(power, trace[["t", "power_w"]].to_dict("records"))
    _, ep = energy_mod.power_curve(t, trace["power_w"].to_numpy())
    assert power.state()["gpu:0"].source == "instant_power"
    assert power.state()["gpu:0"].energy_j == pytest.approx(ep[-1] - ep[0], rel=1e-9)
    # the counter and integrated instant power agree on the whole capture (REFERENCE.md: within 0.2 %)
    assert power.state()["gpu:0"].energy_j == pytest.approx(counter.state()["gpu:0"].energy_j, rel=0.01)


def test_a_counter_device_missing_one_counter_reading_counts_that_time_once(trace: pd.DataFrame) -> None:
    rows = trace[["t", "energy_j", "power_w"]].iloc[:2000].to_dict("records")
    whole = EnergyAccumulator()
    _feed(whole, rows)
    gappy = EnergyAccumulator()
    for k, row in enumerate(rows):
        _feed(gappy, [dict(row, energy_j=float("nan")) if k % 7 == 3 else row])
    assert gappy.state()["gpu:0"].energy_j == pytest.approx(whole.state()["gpu:0"].energy_j, rel=1e-12)


def test_a_nan_power_reading_gives_way_to_the_next_column() -> None:
    assert latest_power({"power_w": float("nan"), "power_avg_w": 250.0}) == (250.0, "averaged_power")
    assert latest_power({"power_w": None, "power_est_w": 40}) == (40.0, "estimate")
    assert latest_power({"power_w": float("inf")}) is None
    acc = EnergyAccumulator()
    acc.observe({"host": {"t": 0.0, "power_w": float("nan"), "power_avg_w": 100.0}})
    assert not acc.state()["host"].known  # one reading: no energy yet (never a 0 that was not measured)
    acc.observe({"host": {"t": 2.0, "power_w": float("nan"), "power_avg_w": 200.0}})
    assert acc.state()["host"].known and acc.state()["host"].energy_j == pytest.approx(300.0)


def test_the_prometheus_endpoint_and_the_status_line_share_the_rule() -> None:
    from wattprof.live import RecorderStats

    assert prometheus.LiveEnergy is EnergyAccumulator
    assert "EnergyAccumulator" in RecorderStats.__init__.__code__.co_names

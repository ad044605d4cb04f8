"""Bottleneck verdicts on the real H100 captures, and the gpm-csv reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

from wattprof.analysis.bottleneck import (
    Thresholds,
    Verdict,
    classify_timeline,
    classify_windows,
    gap_fractions,
    windows_from_steps,
)
from wattprof.errors import InputError
from wattprof.formats.gpm_csv import GPM_COLUMN_MAP, read_gpm_csv, sniff
from wattprof.formats.nvml_trace import read_nvml_trace
from wattprof.formats.steps_jsonl import read_steps_jsonl
from wattprof.schema import METRICS

FIX = FIXTURES
H100 = FIX / "nvidia-h100"
GPM = FIX / "nvidia-h100-gpm"
SERVE = FIX / "nvidia-h100-serve"
GPM_CSV = GPM / "gpm_samples_500ms.csv"
DEV = "gpu:0"


def nvml_samples(d: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    trace = read_nvml_trace(d / "nvml_samples_10ms.csv")
    g = trace.gpus[0]
    samples = pd.DataFrame({
        "t": g["t"], "device": DEV, "util_pct": g["util_gpu"], "mem_util_pct": g["util_mem"],
        "power_w": g["power_instant_mw"] / 1000.0, "sm_clock_mhz": g["clock_sm_mhz"],
        "throttle_reasons": g["clocks_event_reasons"],
    })
    # The serve capture has no info.json: it is the same machine kind (H100 SXM, 700 W).
    info = trace.info or json.loads((H100 / "info.json").read_text())
    return samples, {DEV: info["power_limit_mw"] / 1000.0}


def with_gpm(samples: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([samples, read_gpm_csv(GPM_CSV)], ignore_index=True).sort_values("t", kind="stable")


def phase_windows(d: Path, prefix: str) -> pd.DataFrame:
    ph = pd.DataFrame(json.loads((d / "phases.json").read_text()))
    ph = ph.rename(columns={"phase": "label"})
    return ph[ph["label"].str.startswith(prefix)][["label", "t_start", "t_end"]]


def fixture_verdicts(d: Path, gpm: bool = False) -> dict[str, Verdict]:
    samples, limits = nvml_samples(d)
    if gpm:
        samples = with_gpm(samples)
    steps = read_steps_jsonl(d / "steps.jsonl")
    windows = pd.concat([windows_from_steps(steps), phase_windows(d, "idle")], ignore_index=True)
    return classify_windows(samples, windows, limits, steps)


EXPECTED_H100 = {
    "idle_start": ("idle", []),
    "train": ("compute-bound", []),
    "train_stalled": ("host-bound", []),
    "membound": ("memory-bound", []),
    "decode": ("compute-bound", ["power-capped"]),
    "idle_end": ("idle", []),
}
EXPECTED_GPM = {
    **EXPECTED_H100,
    "launchbound": ("host-bound", []),
    "matmul": ("compute-bound", ["power-capped"]),
}


def _table(verdicts: dict[str, Verdict]) -> dict[str, tuple[str, list[str]]]:
    return {k: (v.verdict, v.modifiers) for k, v in verdicts.items()}


# --- the real captures ------------------------------------------------------------------------


def test_h100_nvml_only():
    v = fixture_verdicts(H100)
    assert _table(v) == EXPECTED_H100
    assert {x.basis for x in v.values()} == {"nvml"}


@pytest.mark.parametrize("gpm", [False, True], ids=["nvml-only", "with-gpm"])
def test_h100_gpm_capture(gpm):
    v = fixture_verdicts(GPM, gpm=gpm)
    assert _table(v) == EXPECTED_GPM
    assert {x.basis for x in v.values()} == ({"gpm"} if gpm else {"nvml"})


def test_gpm_tells_launch_bound_from_stalled():
    v = fixture_verdicts(GPM, gpm=True)
    lb = v["launchbound"].evidence
    # NVML says kernels are resident a third of the time; GPM says the SMs are nearly idle.
    assert 25 < lb["util_pct"] < 50
    assert lb["sm_active_pct"] < 5
    assert lb["sm_active_per_util"] < 0.25
    assert "launch-bound" in v["launchbound"].reason
    assert "CUDA graphs" in v["launchbound"].suggestion
    # The stalled phase's SMs are busy while kernels run: its cause is the gap, not the launches.
    st = v["train_stalled"].evidence
    assert st["sm_active_per_util"] > 0.5
    assert st["gap_frac"] == pytest.approx(0.71, abs=0.03)
    assert "DataLoader" in v["train_stalled"].suggestion
    # Memory-bound from DRAM activity, not NVML's memory utilisation.
    mb = v["membound"].evidence
    assert mb["dram_active_pct"] > 80 and mb["tensor_active_pct"] < 1
    assert "DRAM" in v["membound"].reason
    mm = v["matmul"].evidence
    assert mm["tensor_active_pct"] > 85 and mm["dram_active_pct"] < 40


def test_evidence_numbers_and_suggestions():
    v = fixture_verdicts(H100)
    tr = v["train"].evidence
    assert 90 < tr["util_pct"] < 100
    assert 60 < tr["mem_util_pct"] < 75
    assert tr["power_limit_w"] == 700
    assert 0.8 < tr["power_frac"] < 0.95
    assert tr["power_cap_frac"] < 0.5
    assert tr["duration_s"] == pytest.approx(20.0, abs=0.1)
    assert tr["nvml_coverage"] > 0.99
    assert v["membound"].evidence["mem_util_per_util"] > 0.95
    dec = v["decode"].evidence
    assert dec["power_cap_frac"] > 0.8
    assert "power limit" in v["decode"].suggestion
    assert v["train_stalled"].evidence["gap_frac"] > 0.6
    assert v["train"].evidence["gap_frac"] < 0.01
    idle = v["idle_start"].evidence
    assert idle["util_pct"] == 0 and idle["busy_time_frac"] == 0
    assert 110 < idle["power_w"] < 130 and 110 < idle["idle_power_w"] < 130
    for label, verdict in v.items():
        assert verdict.suggestion.strip(), label
        assert verdict.reason.strip(), label
        d = verdict.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert all(np.isfinite(x) for x in d["evidence"].values())


def test_serve_is_host_bound():
    samples, limits = nvml_samples(SERVE)
    v = classify_windows(samples, phase_windows(SERVE, ""), limits)
    assert _table(v) == {
        "idle_start": ("idle", []),
        "serve_b1": ("host-bound", []),
        "serve_b8": ("host-bound", []),
        "idle_end": ("idle", []),
    }
    # Nearly idle power, but kernels arrive all the time: waiting on the host, not idle.
    for label in ("serve_b1", "serve_b8"):
        ev = v[label].evidence
        assert ev["util_pct"] < 10 and ev["busy_time_frac"] > 0.8
        assert ev["power_w"] < 1.5 * ev["idle_power_w"]


def test_timeline_follows_the_phases():
    samples, limits = nvml_samples(H100)
    tl = classify_timeline(samples, limits, window_s=5.0)
    names = [v.verdict for _, _, v in tl]
    assert names[0] == "idle" and names[-1] == "idle"
    assert {"compute-bound", "host-bound", "memory-bound"} <= set(names)
    assert any("power-capped" in v.modifiers for _, _, v in tl)
    starts = [a for a, _, _ in tl]
    assert np.allclose(np.diff(starts), 5.0)
    assert all(b - a <= 5.0 + 1e-9 for a, b, _ in tl)
    # The 10 s membound phase starts 35.2 s into the trace: the window [40, 45) lies inside it.
    t0 = samples["t"].min()
    inside = [v for a, _, v in tl if 40 <= a - t0 < 41]
    assert inside and inside[0].verdict == "memory-bound"


# --- synthetic checks of the rules and the averaging -------------------------------------------


def _synthetic(n: int = 1000, dt: float = 0.01, **cols: np.ndarray | float) -> pd.DataFrame:
    df = pd.DataFrame({"t": 1000.0 + np.arange(n) * dt, "device": DEV})
    for k, v in cols.items():
        df[k] = v
    return df


def _one(samples: pd.DataFrame, t0: float = 1000.0, t1: float = 1010.0, **kw) -> Verdict:
    w = pd.DataFrame({"label": ["w"], "t_start": [t0], "t_end": [t1]})
    return classify_windows(samples, w, {DEV: 700.0}, **kw)["w"]


@pytest.mark.parametrize("bit", [0x20, 0x40])
def test_thermal_bits_give_thermal_modifier(bit):
    n = 1000
    reasons = np.where(np.arange(n) % 10 < 3, bit, 0).astype(float)  # set 30 % of the time
    v = _one(_synthetic(n, util_pct=95.0, mem_util_pct=40.0, power_w=450.0, throttle_reasons=reasons))
    assert v.verdict == "compute-bound"
    assert v.modifiers == ["thermal-throttled"]
    assert v.evidence["thermal_frac"] == pytest.approx(0.3, abs=0.01)
    assert "cooling" in v.suggestion


def test_power_cap_bit_alone_is_not_thermal_and_caps_only_when_frequent():
    n = 1000
    often = np.where(np.arange(n) % 10 < 8, 0x4, 0).astype(float)
    v = _one(_synthetic(n, util_pct=95.0, mem_util_pct=40.0, power_w=600.0, throttle_reasons=often))
    assert v.modifiers == ["power-capped"]
    rare = np.where(np.arange(n) % 10 < 2, 0x80, 0).astype(float)
    v = _one(_synthetic(n, util_pct=95.0, mem_util_pct=40.0, power_w=600.0, throttle_reasons=rare))
    assert v.modifiers == []
    assert v.evidence["power_cap_frac"] == pytest.approx(0.2, abs=0.01)
    # Mean power at >= 95 % of the limit caps without any bit.
    v = _one(_synthetic(n, util_pct=95.0, mem_util_pct=40.0, power_w=690.0, throttle_reasons=0.0))
    assert v.modifiers == ["power-capped"]


def test_averages_are_time_weighted():
    # util 100 for 1 s sampled every 10 ms, then 0 for 1 s sampled every 0.25 s (mid-interval
    # stamps). Counting samples would give 96 %; time weighting gives 50 % up to the half gap
    # (65 ms) by which the last dense sample reaches into the sparse part.
    t = np.concatenate([1000.005 + np.arange(100) * 0.01, 1001.125 + np.arange(4) * 0.25])
    util = np.concatenate([np.full(100, 100.0), np.zeros(4)])
    s = pd.DataFrame({"t": t, "device": DEV, "util_pct": util, "power_w": 300.0})
    v = _one(s, 1000.0, 1002.0)
    assert v.evidence["util_pct"] == pytest.approx(100 * 1.06 / 2.0, abs=0.5)
    assert v.evidence["nvml_coverage"] == pytest.approx(1.0)
    # A GPM window sample stamped at its midpoint covers exactly its window.
    g = pd.DataFrame({"t": [1000.25, 1000.75], "device": DEV, "sm_active_pct": [80.0, 20.0]})
    s2 = pd.concat([_synthetic(100, util_pct=90.0, power_w=300.0), g], ignore_index=True)
    assert _one(s2, 1000.0, 1000.5).evidence["sm_active_pct"] == pytest.approx(80.0)
    assert _one(s2, 1000.0, 1001.0).evidence["sm_active_pct"] == pytest.approx(50.0)
    assert _one(s2, 1000.0, 1001.0).basis == "gpm"
    # A hole in the trace (sampler stopped for 10 s) is not filled: each side holds 1 s at most,
    # and a window less than half covered gets no verdict.
    s3 = pd.concat([_synthetic(100, util_pct=90.0),
                    _synthetic(100, util_pct=10.0).assign(t=lambda d: d.t + 11)])
    w = pd.DataFrame({"label": ["w"], "t_start": [1000.0], "t_end": [1012.0]})
    assert classify_windows(s3, w, {DEV: 700.0}) == {}
    v3 = classify_windows(s3, w, {DEV: 700.0}, thresholds=Thresholds(min_coverage=0.1))["w"]
    assert v3.evidence["util_pct"] == pytest.approx(50.0, abs=0.5)
    assert v3.evidence["nvml_coverage"] == pytest.approx(4.0 / 12.0, abs=0.01)


def test_idle_needs_power_near_the_floor():
    # No kernels but 400 W (e.g. copy engines): not idle.
    s = _synthetic(1000, util_pct=0.0, mem_util_pct=0.0, power_w=400.0)
    v = _one(s, idle_power_w={DEV: 100.0})
    assert v.verdict == "host-bound"
    v = _one(_synthetic(1000, util_pct=0.0, mem_util_pct=0.0, power_w=110.0), idle_power_w={DEV: 100.0})
    assert v.verdict == "idle"
    assert "release" in v.suggestion


def test_power_limit_column_wins_and_devices_are_averaged():
    a = _synthetic(1000, util_pct=95.0, mem_util_pct=40.0, power_w=400.0, power_limit_w=400.0)
    b = a.assign(device="gpu:1", power_w=200.0)
    s = pd.concat([a, b], ignore_index=True)
    v = _one(s)
    assert v.evidence["n_devices"] == 2
    assert v.evidence["power_frac"] == pytest.approx(0.75)  # (1.0 + 0.5) / 2, limits from the column
    assert v.modifiers == []
    only0 = _one(s, devices=["gpu:0"])
    assert only0.modifiers == ["power-capped"] and only0.evidence["n_devices"] == 1


def _python_lines_run_in_analysis(fn):
    """(fn(), lines of Python run in wattprof/analysis/ meanwhile): a deterministic measure of
    whether work is vectorised (a wall-clock limit flakes on a loaded machine)."""
    import sys

    import wattprof.analysis as pkg

    where, count = str(Path(pkg.__file__).parent), 0

    def local(frame, event, arg):
        nonlocal count
        count += event == "line"
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename.startswith(where) else None)
    try:
        out = fn()
    finally:
        sys.settrace(None)
    return out, count


def test_gap_fractions_vectorised_and_per_run():
    n = 100_000
    t0 = np.arange(n) * 0.2
    steps = pd.DataFrame({"t_start": t0, "t_end": t0 + 0.1, "label": "a"})
    # A second label after the first run: its gap to 'a' does not count.
    steps = pd.concat([steps, pd.DataFrame({"t_start": [n * 0.2 + 5.0], "t_end": [n * 0.2 + 6.0],
                                            "label": ["b"]})], ignore_index=True)
    g, lines = _python_lines_run_in_analysis(lambda: gap_fractions(steps))
    assert lines < 2000, lines  # vectorised: not a line of Python per step
    assert g["a"] == pytest.approx((n - 1) * 0.1 / ((n - 1) * 0.2 + 0.1))
    assert g["b"] == 0.0
    w = windows_from_steps(steps)
    assert list(w["label"]) == ["a", "b"]
    assert w["t_end"].iloc[0] == pytest.approx((n - 1) * 0.2 + 0.1)
    # Overlapping steps (several ranks) leave no gap.
    ranks = pd.DataFrame({"t_start": [0.0, 0.05, 1.0], "t_end": [1.0, 0.5, 2.0], "label": "x"})
    assert gap_fractions(ranks)["x"] == 0.0


def test_many_windows_per_label():
    samples, limits = nvml_samples(H100)
    steps = read_steps_jsonl(H100 / "steps.jsonl")
    # Every step its own window (1500 rows): pooled per label, steps only (gaps excluded).
    v = classify_windows(samples, steps[["label", "t_start", "t_end"]], limits)
    assert v["membound"].verdict == "memory-bound"
    assert v["train"].verdict == "compute-bound"
    # Only the steps' own time is pooled: the stalled phase's 150 ms gaps are left out.
    st = steps[steps["label"] == "train_stalled"]
    assert v["train_stalled"].evidence["duration_s"] == pytest.approx((st["t_end"] - st["t_start"]).sum())
    assert v["train_stalled"].evidence["duration_s"] < 0.4 * v["train"].evidence["duration_s"] / 2


# --- gpm-csv ----------------------------------------------------------------------------------


def test_read_gpm_csv_fixture():
    df = read_gpm_csv(GPM_CSV)
    raw = pd.read_csv(GPM_CSV)
    assert len(df) == len(raw) == 123
    assert np.allclose(df["t"], (raw["t_start"] + raw["t_end"]) / 2)
    assert set(df["device"]) == {"gpu:0"}
    assert list(df.columns) == ["t", "device", *GPM_COLUMN_MAP.values()]
    assert np.allclose(df["sm_active_pct"], raw["sm_util"])
    assert np.allclose(df["pcie_rx_mbps"], raw["pcie_rx_per_sec"] * 2**20 / 1e6)  # NVML's MiB/s -> MB/s
    assert read_gpm_csv(GPM_CSV, device="gpu:3")["device"].iloc[0] == "gpu:3"
    assert sniff(GPM_CSV)
    assert not sniff(H100 / "nvml_samples_10ms.csv")
    assert not sniff(H100 / "steps.jsonl")
    assert not sniff(H100 / "missing.csv")


def test_gpm_column_map_names_real_metrics_and_schema_columns():
    probe = json.loads((H100 / "gpm_probe.json").read_text())
    names = set(probe["gpm_metric_names"])
    for metric, column in GPM_COLUMN_MAP.items():
        assert f"NVML_GPM_METRIC_{metric}" in names
        assert column in METRICS


HEADER = "t_start,t_end,sm_util,dram_bw_util\n"


@pytest.mark.parametrize("body, line, text", [
    ("t,power\n1,2\n", 1, "t_start, t_end"),
    ("t_start,t_end,fp64_util\n1,2,3\n", 1, "GPM metrics"),
    (HEADER + "1,1.5,10,20\n1.5,2,abc,20\n", 3, "'sm_util'"),
    (HEADER + "1,1.5,10,20\n1.5,2,10,-4\n", 3, "'dram_bw_util'"),
    (HEADER + "1,1.5,10,20\n1.5,,10,20\n", 3, "'t_end'"),
    (HEADER + "1,1.5,10,20\n2,1.5,10,20\n", 3, "before t_start"),
    (HEADER, None, "no GPM windows"),
])
def test_read_gpm_csv_errors(tmp_path, body, line, text):
    p = tmp_path / "g.csv"
    p.write_text(body)
    with pytest.raises(InputError) as e:
        read_gpm_csv(p)
    assert e.value.path == str(p)
    assert e.value.line == line
    assert text in str(e.value)


def test_read_gpm_csv_empty_cells_and_gpu_column(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("t_start,t_end,gpu,sm_util,dram_bw_util,graphics_util\n"
                 "1,2,1,10,,5\n1,2,0,30,40,5\n")
    df = read_gpm_csv(p)
    assert list(df["device"]) == ["gpu:0", "gpu:1"]
    assert df.loc[df["device"] == "gpu:1", "dram_active_pct"].isna().all()
    assert "graphics_util" not in df.columns

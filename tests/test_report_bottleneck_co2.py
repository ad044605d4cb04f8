"""The report explains why (bottleneck per label) and what it emits (CO2), from the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import wattprof_in_process


def imported(tmp_path, fx, gpm: bool = False):
    run = tmp_path / "run"
    wattprof_in_process("import", str(run), "--samples", str(fx / "nvml_samples_10ms.csv"), "--steps", str(fx / "steps.jsonl"),
             check=True)
    if gpm:
        wattprof_in_process("import", str(run), "--samples", str(fx / "gpm_samples_500ms.csv"), check=True)  # auto: gpm-csv
    return run


def verdicts(run, *args):
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", *args, check=True).stdout)
    return rep, {k: (v["bottleneck"]["verdict"], v["bottleneck"]["modifiers"]) for k, v in rep["by_label"].items()}


def test_h100_verdicts_in_the_json_report(tmp_path, h100):
    rep, v = verdicts(imported(tmp_path, h100))
    assert v["train"][0] == "compute-bound"
    assert v["train_stalled"][0] == "host-bound"
    assert v["membound"][0] == "memory-bound"
    assert v["decode"] == ("compute-bound", ["power-capped"])
    assert rep["unlabelled"]["bottleneck"]["verdict"] == "idle" and rep["idle"]["energy_j"] > 0
    for lr in rep["by_label"].values():
        b = lr["bottleneck"]
        assert b["suggestion"] and b["evidence"]["util_pct"] >= 0 and b["basis"] == "nvml"
    w = rep["wasted"]
    assert w["idle_j"] == pytest.approx(rep["idle"]["energy_j"])
    # host-side gaps of the host-bound label: its between-step energy and estimated in-step waits, never all
    # of its energy (the compute inside its steps is not waste)
    stalled = rep["by_label"]["train_stalled"]
    assert stalled["between_steps_energy_j"] <= w["host_bound_j"] < stalled["energy_j"]
    assert w["host_bound_j"] == pytest.approx(w["host_between_steps_j"] + w["host_in_step_wait_j"])


@pytest.mark.parametrize("gpm", [False, True])
def test_gpm_capture_verdicts_with_and_without_gpm(tmp_path, h100_gpm, gpm):
    rep, v = verdicts(imported(tmp_path, h100_gpm, gpm))
    assert v["launchbound"][0] == "host-bound"
    assert v["matmul"] == ("compute-bound", ["power-capped"])
    assert v["train_stalled"][0] == "host-bound" and v["membound"][0] == "memory-bound"
    assert v["decode"] == ("compute-bound", ["power-capped"])
    assert {lr["bottleneck"]["basis"] for lr in rep["by_label"].values()} == ({"gpm"} if gpm else {"nvml"})


def test_co2_matches_a_hand_computation_from_codecarbons_data(tmp_path, h100):
    import importlib.util
    from pathlib import Path

    run = imported(tmp_path, h100)
    cc = Path(importlib.util.find_spec("codecarbon").submodule_search_locations[0]) / "data" / "private_infra"
    fra = json.loads((cc / "global_energy_mix.json").read_text())["FRA"]["carbon_intensity"]
    va_lb = json.loads((cc / "2023" / "usa_emissions.json").read_text())["virginia"]["emissions"]
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", "--country", "FRA", check=True).stdout)
    kwh = rep["energy_j"] / 3.6e6
    assert rep["carbon"]["g_co2e"] == pytest.approx(kwh * 1.0 * fra, rel=1e-6)
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", "--region", "aws:us-east-1", check=True).stdout)
    g_per_kwh = va_lb * 0.45359237  # lb/MWh -> g/kWh
    assert rep["carbon"]["g_co2e"] == pytest.approx(kwh * 1.15 * g_per_kwh, rel=1e-6)
    assert rep["carbon"]["pue"] == 1.15 and rep["carbon"]["basis"] == "location-based"
    assert "codecarbon" in rep["carbon"]["intensity_source"]
    assert sum(rep["carbon"]["by_label_g_co2e"].values()) < rep["carbon"]["g_co2e"]


def test_unknown_region_is_a_usage_error_and_no_location_is_said(tmp_path, h100):
    run = imported(tmp_path, h100)
    p = wattprof_in_process("report", str(run), "-f", "json", "--region", "aws:mars-1")
    assert p.returncode == 2 and "unknown region 'aws:mars-1'" in p.stderr and not p.stdout
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    assert rep["carbon"] is None and "no location known" in rep["carbon_note"]

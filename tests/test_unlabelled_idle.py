"""Unlabelled time is not idle, and in-step work is not waste.

A run without step marks reports its total first; time outside labels is "unlabelled"; only the
part where the GPU sits at its idle floor doing nothing is "idle"; wasted energy is idle energy
plus the host-side gaps of host-bound labels, never the compute inside steps."""

from __future__ import annotations

import json
import re

import numpy as np
from conftest import H100, H100_SERVE, wattprof, wattprof_in_process
from test_bottleneck import DEV, nvml_samples, phase_windows

from wattprof.analysis.bottleneck import classify_windows


def test_a_run_without_marks_leads_with_the_total_and_is_idle_only_where_the_trace_idles(tmp_path):
    # nvml-replay replays the H100 capture from its start: 5 s idle at ~120 W, then training at ~630 W
    run = tmp_path / "r"
    p = wattprof("record", "-q", "-o", str(run), "-c", "nvml-replay", "--", "sleep", "7")
    assert p.returncode == 0, p.stderr
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    un, idle = rep["unlabelled"], rep["idle"]
    assert un["energy_j"] == rep["energy_j"] and un["duration_s"] == rep["duration_s"]
    assert 4.0 < idle["duration_s"] < 5.8  # the trace's idle start, not the training after it
    assert 110 < idle["mean_power_w"] < 130  # at the floor: not a mix with the training
    assert idle["energy_j"] < 0.7 * rep["energy_j"]
    assert rep["wasted"]["total_j"] == rep["idle"]["energy_j"] and rep["wasted"]["share"] < 0.7
    assert rep["unlabelled"]["bottleneck"]["verdict"] != "idle"  # the trace trains after 5 s
    text = wattprof_in_process("report", str(run), check=True).stdout
    lines = text.splitlines()
    energy = next(i for i, x in enumerate(lines) if x.startswith("Energy:"))
    assert "mean" in lines[energy + 1] and "no step marks" in lines[energy + 1]
    assert "Unlabelled (no step marks: the whole run)" in text and "of which idle" in text


def test_a_vllm_import_is_not_all_wasted(tmp_path):
    run = tmp_path / "serve"
    wattprof_in_process("import", str(run), "--samples", str(H100_SERVE / "nvml_samples_10ms.csv"), "--steps",
             str(H100_SERVE / "vllm_bench_detailed.json"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    w = rep["wasted"]
    serve = rep["by_label"]["serve"]
    assert w["share"] < 0.5, w
    # the requests' own time is not waste: only the idle time and the time with no request in flight
    assert w["host_in_step_wait_j"] == 0
    assert w["total_j"] <= rep["idle"]["energy_j"] + serve["between_steps_energy_j"] + 1e-6


def test_a_training_labels_compute_is_not_waste(tmp_path):
    run = tmp_path / "h"
    wattprof_in_process("import", str(run), "--samples", str(H100 / "nvml_samples_10ms.csv"), "--steps",
             str(H100 / "steps.jsonl"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    w, stalled = rep["wasted"], rep["by_label"]["train_stalled"]
    assert stalled["bottleneck"]["verdict"] == "host-bound"
    assert w["host_between_steps_j"] == stalled["between_steps_energy_j"]
    # in-step waits at the idle floor: far less than the steps' own energy
    assert 0 < w["host_in_step_wait_j"] < 0.8 * stalled["in_step_energy_j"]
    assert w["total_j"] < rep["idle"]["energy_j"] + stalled["energy_j"]


def test_a_few_percent_of_utilisation_at_the_idle_floor_is_idle_and_the_reason_keeps_its_digits():
    samples, limits = nvml_samples(H100)
    win = phase_windows(H100, "idle_start")
    # driver housekeeping: every third utilisation reading shows 15.54 %, a mean of 5.18 %
    m = (samples["t"] >= win["t_start"].iloc[0]) & (samples["t"] <= win["t_end"].iloc[0])
    idx = np.flatnonzero(m.to_numpy())
    samples.loc[samples.index[idx[::3]], "util_pct"] = 15.54
    v = classify_windows(samples, win, limits)["idle_start"]
    assert 5.0 < v.evidence["util_pct"] < 5.4
    assert v.verdict == "idle", v.reason
    # 5.18 % must not print as "5 %" next to a 5 % threshold
    assert re.search(r"(?<![\d.])5 %", v.reason) is None and f"util {v.evidence['util_pct']:.1f} %" in v.reason
    assert DEV in samples["device"].unique()


def test_batch_one_decoding_at_the_floor_is_not_idle():
    samples, limits = nvml_samples(H100_SERVE)
    v = classify_windows(samples, phase_windows(H100_SERVE, "serve_b1"), limits)["serve_b1"]
    assert v.verdict == "host-bound"


def test_a_steady_state_window_lies_inside_its_own_labels_time(tmp_path):
    """Requests in flight for 50 s with a training burst in the middle: the serve label's steady
    state must not charge the burst's energy to the requests."""
    t0 = json.loads((H100_SERVE / "requests_wallclock.jsonl").read_text().splitlines()[0])["t_start"]
    reqs = [{"t_start": t0 + 1.5 * i, "t_first_token": t0 + 1.5 * i + 0.2, "t_end": t0 + 1.5 * i + 10,
             "output_tokens": 100, "prompt_tokens": 10, "label": "serve"} for i in range(30)]

    def report_with(extra):
        run = tmp_path / f"r{len(extra)}"
        steps = tmp_path / f"s{len(extra)}.jsonl"
        steps.write_text("".join(json.dumps(x) + "\n" for x in reqs + extra))
        wattprof_in_process("import", str(run), "--samples", str(H100_SERVE / "nvml_samples_10ms.csv"), "--steps", str(steps),
                 check=True)
        return json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)["by_label"]["serve"]

    alone = report_with([])
    assert alone["steady_state"] is not None, alone["steady_state_note"]
    ss = alone["steady_state"]
    burst = [{"t_start": (ss["t_start"] + ss["t_end"]) / 2, "t_end": (ss["t_start"] + ss["t_end"]) / 2 + 3,
              "label": "train", "tokens": 1000}]
    mixed = report_with(burst)
    assert mixed["steady_state"] is None and "other labels (train)" in mixed["steady_state_note"]

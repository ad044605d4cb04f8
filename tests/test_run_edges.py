"""The edges of a recorded run: a reading when it starts and a final one when it stops, so every
step inside the run is covered by samples and run edges never look like clock skew."""

from __future__ import annotations

import time

import wattprof
from wattprof.collectors.base import resolve
from wattprof.recording.recorder import Recorder
from wattprof.reports.build import build_report
from wattprof.run import Run, RunWriter


def test_steps_right_at_the_edges_of_a_recording_are_inside_the_samples(tmp_path):
    # A slow interval makes the gap between the last tick and stop() large: without a final
    # reading at stop the last steps fall after the last sample.
    w = RunWriter.create(tmp_path / "r", interval_s=0.5)
    rec = Recorder(w, resolve(["nvml-replay"]), interval=0.5)
    rec.start()
    marks = []
    for _ in range(3):
        t0 = time.time()
        time.sleep(0.2)
        marks.append((t0, time.time()))
    rec.stop()
    w.finalize(status="finished")
    t = Run.open(tmp_path / "r").samples["t"]
    assert t.min() <= marks[0][0], "no reading before the first step"
    assert t.max() >= marks[-1][1], "no reading after the last step"


def test_short_profiled_runs_have_no_step_outside_the_samples_and_no_skew_flag(tmp_path):
    for i in range(3):
        with wattprof.profile("edges", collectors=["nvml-replay"], interval=0.1, out=tmp_path / f"r{i}") as prof:
            for _ in range(4):
                with prof.step(tokens=100, label="train"):
                    time.sleep(0.01)
        run = Run.open(tmp_path / f"r{i}")
        rep = build_report(run, bottlenecks=False)
        assert not [f for f in rep.flags if "clock skew" in f], rep.flags
        t = run.samples["t"]
        assert t.min() <= run.steps["t_start"].min() and t.max() >= run.steps["t_end"].max()


def test_an_implausible_mean_power_and_a_far_off_self_check_are_flagged(tmp_path):
    """A label whose energy comes out below every power reading in its time (here: the counter
    stalled through it, so its energy is lost) is a problem the report names, as is a self-check
    (counter vs integrated instant power) off by a lot."""
    import json

    import pandas as pd
    from conftest import H100, wattprof_in_process

    d = pd.read_csv(H100 / "nvml_samples_10ms.csv")
    # the counter stalls through the training phase (a driver fault), then counts on from where it stopped
    mid = d["t"].between(1795346745.9, 1795346766.0)
    lost = d.loc[mid, "energy_mj"].iloc[-1] - d.loc[mid, "energy_mj"].iloc[0]
    d.loc[mid, "energy_mj"] = d.loc[mid, "energy_mj"].iloc[0]
    d.loc[d["t"] > 1795346766.0, "energy_mj"] -= lost
    csv = tmp_path / "nvml_samples_10ms.csv"
    d.to_csv(csv, index=False)
    run = tmp_path / "r"
    wattprof_in_process("import", str(run), "--samples", str(csv), "--steps", str(H100 / "steps.jsonl"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    assert any("label train: mean power" in f and "not plausible" in f for f in rep["flags"]), rep["flags"]
    assert any(f.startswith("self-check gpu:0") for f in rep["flags"]), rep["flags"]

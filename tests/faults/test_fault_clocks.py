"""Time going wrong: the GPU's energy counter resetting (a real `wattprof record` on a replayed trace
whose counter drops), and the wall clock jumping during a run (an injected clock: the system
clock of a test machine is not ours to step)."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import H100, fixture_dir, wattprof, wattprof_in_process

from wattprof.collectors.nvml import NvmlReplayCollector
from wattprof.recording.recorder import CLOCK_JUMP_S, Recorder
from wattprof.reports.build import build_report
from wattprof.run import Run, RunWriter


class JumpClock:
    """The system clock, whose wall-clock reading can be stepped (as NTP or an admin would)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_energy_counter_going_backwards_is_handled_and_flagged_in_the_report(tmp_path):
    """Guarantee: an NVML energy counter that goes backwards mid-run (a driver reload resets it)
    never yields negative or inflated energy: the drop counts as 0 and the report's device notes
    say the counter went backwards (text and JSON)."""
    src = fixture_dir(H100)
    trace = pd.read_csv(src / "nvml_samples_10ms.csv").iloc[:600].copy()  # 6 s of the capture
    e = trace["energy_mj"].to_numpy(dtype=float)
    e[250:] = e[250:] - e[250] + 1000.0  # reset to ~1 J at 2.5 s
    trace["energy_mj"] = e
    (tmp_path / "t").mkdir()
    trace.to_csv(tmp_path / "t" / "trace.csv", index=False)
    (tmp_path / "t" / "info.json").write_text((src / "info.json").read_text())
    run = tmp_path / "run"
    p = wattprof("record", "--out", str(run), "-q", "-c", f"nvml-replay:trace={tmp_path / 't' / 'trace.csv'}",
                 "--interval", "0.05", "--", sys.executable, "-c", "import time; time.sleep(4)")
    assert p.returncode == 0, p.stderr
    s = Run.open(run).samples
    assert (np.diff(s.loc[s["device"] == "gpu:0", "energy_j"].to_numpy()) < 0).sum() == 1  # the reset was recorded
    text = wattprof_in_process("report", str(run), check=True).stdout
    assert "gpu:0: energy counter went backwards 1 time(s)" in text
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    dev = next(d for d in rep["devices"] if d["device"] == "gpu:0")
    assert any("went backwards" in n for n in dev["notes"])
    assert 0 < dev["energy_j"] < 4.5 * 700  # never the size of the drop, never negative


def _replay(clock: JumpClock) -> NvmlReplayCollector:
    return NvmlReplayCollector(clock=clock, trace=str(fixture_dir(H100) / "nvml_samples_10ms.csv"))


def test_wall_clock_jump_between_ticks_is_recorded(tmp_path):
    """Guarantee: a wall-clock step larger than CLOCK_JUMP_S between two ticks is recorded as a
    `clock_jump` event with its size (ticks driven one by one, as a replay does)."""
    clock = JumpClock()
    w = RunWriter.create(tmp_path / "r")
    rec = Recorder(w, [_replay(clock)], interval=0.1, clock=clock)
    rec.start(background=False)
    for _ in range(3):
        rec.sample_once()
    clock.offset += 0.5 * CLOCK_JUMP_S  # NTP slewing or a small step: not a jump
    rec.sample_once()
    clock.offset -= 3600.0  # the wall clock set back an hour
    for _ in range(3):
        rec.sample_once()
    rec.stop()
    w.finalize(status="finished")
    ev = Run.open(tmp_path / "r").events
    jumps = ev[ev["kind"] == "clock_jump"]
    assert len(jumps) == 1 and jumps["jump_s"].iloc[0] == pytest.approx(-3600.0, abs=0.1)
    assert rec.stats.clock_jumps == 1


def test_wall_clock_jump_while_sampling_keeps_the_schedule_on_the_monotonic_clock(tmp_path):
    """Guarantee: while sampling in the background, a wall-clock jump neither stalls nor bursts
    the sampling (ticks follow the monotonic clock: the samples stay one interval apart except
    for the one step of the jump itself) and it is recorded as a `clock_jump` event."""
    clock = JumpClock()
    w = RunWriter.create(tmp_path / "r")
    rec = Recorder(w, [_replay(clock)], interval=0.05, clock=clock, read_timeout=1.0)
    rec.start()
    time.sleep(1.3)
    clock.offset += 120.0
    time.sleep(1.7)
    rec.stop()
    w.finalize(status="finished")
    run = Run.open(tmp_path / "r")
    t = np.sort(run.samples["t"].to_numpy())
    d = np.diff(t)
    assert (d > 100).sum() == 1 and d[d > 100][0] == pytest.approx(120.05, abs=0.5)
    # A stall (waiting out the jump on the wall clock) leaves no samples after it; a burst (catching
    # up 120 s of ticks) thousands. The bounds allow for a loaded machine's scheduling (late ticks
    # are skipped, not bunched): 1.7 s at 20 Hz is 34 ticks after the jump, 3 s is 60 in all.
    after = int((t > t[0] + 100).sum())
    assert 20 <= after <= 36, after
    assert 40 <= len(t) <= 62, len(t)
    assert d[d < 100].max() < 10 * 0.05
    jumps = run.events[run.events["kind"] == "clock_jump"]
    assert len(jumps) == 1 and jumps["jump_s"].iloc[0] == pytest.approx(120.0, abs=0.5)


def test_wall_clock_jump_is_flagged_in_the_report(tmp_path):
    """Guarantee: the report says the wall clock jumped during the run (its times, and step
    alignment across the jump, are suspect)."""
    clock = JumpClock()
    w = RunWriter.create(tmp_path / "r")
    rec = Recorder(w, [_replay(clock)], interval=0.1, clock=clock)
    rec.start(background=False)
    for i in range(20):
        if i == 10:
            clock.offset += 30.0
        rec.sample_once()
        time.sleep(0.01)
    rec.stop()
    w.finalize(status="finished")
    rep = build_report(Run.open(tmp_path / "r"))
    assert any("clock" in f and "jump" in f for f in rep.flags), rep.flags

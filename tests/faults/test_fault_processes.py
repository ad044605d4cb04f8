"""Processes killed with SIGKILL: the recorder itself, and the program it records (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import wattprof_in_process
from faultkit import max_gap, meta

from wattprof.recording.recorder import FLUSH_INTERVAL_S
from wattprof.run import Run

INTERVAL = 0.02


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    env.pop("WATTPROF_RUN_ID", None)
    return env


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_recorder_killed_with_sigkill_leaves_a_readable_unfinished_run_that_reports(tmp_path):
    """Guarantee: `kill -9` of `wattprof record` mid-run loses at most the last flush interval
    (1 s) of samples; the run stays readable, reads as unfinished, and `wattprof report` on it
    exits 0 and says it never finished."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "--out", str(run), "-c", "nvml-replay",
                             "--interval", str(INTERVAL), "--", sys.executable, "-c", "import time; time.sleep(60)"],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list(run.glob("samples-*.arrows")):
            time.sleep(0.05)
        time.sleep(3.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        for c in locals().get("children", []):
            c.kill()
        if proc.poll() is None:
            proc.kill()
    r = Run.open(run)
    assert r.status == "unfinished" and meta(run)["status"] == "recording"
    t = r.samples.loc[r.samples["device"] == "gpu:0", "t"].to_numpy()
    assert len(t) > 50
    # at most the last flush interval lost (plus a tick and scheduling slack)
    assert t.max() >= killed_at - FLUSH_INTERVAL_S - 2 * INTERVAL - 0.5, killed_at - t.max()
    assert max_gap(t) < 10 * INTERVAL  # what was written has no holes
    # the recorder is gone: report finalises the run first, as `wattprof repair` does (issue 12 item 14;
    # a live recorder's run reads "unfinished": test_fault_second_pass.py::test_report_finalises_...)
    rep = wattprof_in_process("report", str(run))
    assert rep.returncode == 0, rep.stderr
    assert "recorder is gone" in rep.stderr and "interrupted" in rep.stdout
    js = wattprof_in_process("report", str(run), "-f", "json")
    assert js.returncode == 0 and json.loads(js.stdout)["run"]["status"] == "interrupted"
    assert len(Run.open(run).samples.query("device == 'gpu:0'")) == len(t)  # nothing lost by finalising


CHILD = """
import os, sys, time, wattprof
print(os.getpid(), flush=True)
with wattprof.profile() as prof:
    while True:
        with prof.step(tokens=10, label="train"):
            time.sleep(0.02)
"""


@pytest.mark.slow  # seconds of real time are the point (a real record, killed or hanging)
def test_profiled_child_killed_with_sigkill_exits_137_and_the_run_is_finalised(tmp_path):
    """Guarantee: when the recorded program dies of `kill -9`, `wattprof record` exits 137
    (128 + 9), finalises the run (status failed, exit_code 137, Parquet written) and keeps the
    steps the program wrote before it died."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "--out", str(run), "-c", "nvml-replay",
                             "-q", "--interval", "0.05", "--", sys.executable, "-c", CHILD],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        child_pid = int(proc.stdout.readline())
        time.sleep(1.5)
        os.kill(child_pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 137, err
    m = meta(run)
    assert m["status"] == "failed" and m["exit_code"] == 137 and m["ended_at"] is not None
    assert list(run.glob("samples-*.parquet")) and not list(run.glob("samples-*.arrows"))
    r = Run.open(run)
    assert len(r.steps) >= 10 and set(r.steps["label"]) == {"train"}
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    assert rep["run"]["status"] == "failed" and rep["by_label"]["train"]["steps"] == len(r.steps)

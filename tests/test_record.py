"""`wattprof record -- CMD` around a real child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import wattprof, wattprof_in_process

CHILD = """
import sys, time, wattprof
with wattprof.profile() as prof:
    for i in range(5):
        with prof.step(tokens=100, label="train"):
            time.sleep(0.05)
    prof.mark(tokens=7, label="eval")
sys.exit(3)
"""


def read_steps(run: Path) -> list[dict]:
    rows = []
    for f in sorted(run.glob("steps-*.jsonl")):
        rows += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return rows


def test_child_steps_join_the_parent_run_and_its_exit_status_is_kept(tmp_path):
    run = tmp_path / "run"
    p = wattprof("record", "--out", str(run), "-c", "nvml-replay", "-c", "host", "--interval", "0.05",
                 "--", sys.executable, "-c", CHILD)
    assert p.returncode == 3, p.stderr
    steps = read_steps(run)
    assert [s["label"] for s in steps] == ["train"] * 5 + ["eval"]
    assert all(s["tokens"] == 100 for s in steps[:5])
    # only the parent sampled: one samples file per collector, no second run created by the child
    assert sorted(x.name for x in run.glob("samples-*")) == ["samples-host.parquet", "samples-nvml-replay.parquet"]
    assert not (tmp_path / "wattprof-runs").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "failed" and meta["exit_code"] == 3
    assert meta["command"][0] == sys.executable
    rep = json.loads(wattprof_in_process("report", str(run), "-f", "json", check=True).stdout)
    assert rep["by_label"]["train"]["steps"] == 5 and rep["by_label"]["train"]["energy_j"] > 0
    assert "energy" in p.stderr.lower()  # the summary


def test_sigterm_reaches_the_child_and_the_run_is_finalised(tmp_path):
    run = tmp_path / "run"
    marker = tmp_path / "child-got-sigterm"
    child = (
        "import signal, sys, time, pathlib\n"
        f"def h(s, f): pathlib.Path({str(marker)!r}).write_text('yes'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, h)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "wattprof", "record", "--out", str(run), "-c", "nvml-replay",
                             "--", sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert marker.read_text() == "yes"
    assert proc.returncode == 0, err  # the child handled SIGTERM and exited 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["ended_at"] is not None
    assert list(run.glob("samples-*.parquet")), "samples were compacted at finalisation"


def test_child_killed_by_signal_gives_128_plus_n(tmp_path):
    p = wattprof("record", "--out", str(tmp_path / "r"), "-c", "host", "-q", "--",
                 sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert p.returncode == 128 + signal.SIGKILL


def test_command_not_found_is_127_and_the_run_still_finalised(tmp_path):
    p = wattprof("record", "--out", str(tmp_path / "r"), "-c", "host", "-q", "--", "no-such-command-xyz")
    assert p.returncode == 127
    assert "command not found: no-such-command-xyz" in p.stderr
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["status"] == "failed" and meta["exit_code"] == 127

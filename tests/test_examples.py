"""The shipped examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wattprof.run import Run

REPO = Path(__file__).resolve().parents[1]


def test_train_loop_example_runs_and_its_run_reports_per_label(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "examples" / "train_loop.py")], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    (run_dir,) = list((tmp_path / "wattprof-runs").iterdir())
    run = Run.open(run_dir)
    assert run.status == "finished"
    assert run.steps.groupby("label").size().to_dict() == {"eval": 10, "train": 30}
    assert f"wattprof report {run_dir.relative_to(tmp_path)}" in p.stdout

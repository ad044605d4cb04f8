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


def test_nightly_example_ships_its_scripts_and_they_run_without_a_gpu(tmp_path):
    """examples/nightly/README.md runs nightly-energy.sh and try-without-gpu.sh: both ship and work."""
    import os
    import re

    readme = (REPO / "examples" / "nightly" / "README.md").read_text()
    for script in set(re.findall(r"examples/nightly/([\w.-]+\.(?:sh|py))", readme)):
        assert (REPO / "examples" / "nightly" / script).is_file(), script
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "STEPS": "5",
           "WATTPROF_FIXTURES": os.environ.get("WATTPROF_FIXTURES", "")}
    p = subprocess.run(["bash", str(REPO / "examples" / "nightly" / "try-without-gpu.sh")], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    runs = sorted(d for d in (tmp_path / "runs" / "train-bench").iterdir() if d.is_dir())  # beside: the summaries cache
    assert len(runs) == 4 and all((r / "report.html").is_file() for r in runs)
    assert {Run.open(r).name for r in runs} == {"train-bench"}  # the script's own profile() name
    # the verdict is on stdout (also while the HTML is written), with its unit
    assert re.search(r"train-bench: j_per_token [+-]\d+\.\d %.*[µm]J/token", p.stdout), p.stdout
    assert "INSUFFICIENT HISTORY train-bench" in p.stdout  # the second night: one earlier run only
    page = (tmp_path / "nightly.html").read_text()
    assert page.count("report.html") >= 4  # each run's own HTML report is linked

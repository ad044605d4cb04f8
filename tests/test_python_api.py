"""The Python API a notebook user meets: load_run, run.report(), per-step energy one call away, a
one-line repr, an explicit profile() signature, and wattprof.step() as a no-op outside a profile."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from conftest import H100, fixture_dir, wattprof_in_process

import wattprof as wp


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    fx = fixture_dir(H100)
    out = tmp_path_factory.mktemp("api") / "run"
    wattprof_in_process("import", str(out), "--samples", str(fx / "nvml_samples_10ms.csv"), "--steps", str(fx / "steps.jsonl"),
             "-n", "h100", check=True)
    return out


def test_load_run_report_and_one_line_repr(run_dir):
    run = wp.load_run(run_dir)
    r = repr(run)
    assert "\n" not in r and len(r) < 200 and "'h100'" in r and "gpu:0" in r
    rep = run.report()
    assert rep.boundary == "GPU only (1 device)" and rep.by_label["train"].energy_j > 0


def test_per_step_energy_is_one_call_away(run_dir):
    run = wp.load_run(run_dir)
    table = run.step_energy()
    assert len(table) == len(run.steps) == 1522
    assert {"energy_j", "j_per_token", "source", "boundary"} <= set(table.columns)
    assert set(table["source"]) == {"counter"} and set(table["boundary"]) == {"GPU only (1 device)"}
    rep = run.report()
    # the steps' own energy is each label's in-step energy (the host time between steps is not in a step)
    by = table.groupby("label")["energy_j"].sum()
    for label, lr in rep.by_label.items():
        assert by[label] == pytest.approx(lr.in_step_energy_j, rel=1e-6)
    train = table[table["label"] == "train"]
    assert (train["j_per_token"] == train["energy_j"] / train["tokens"]).all()


def test_profile_has_an_explicit_signature_and_docstring():
    params = inspect.signature(wp.profile).parameters
    assert {"name", "collectors", "interval", "out", "tags", "label", "sync", "sampler"} <= set(params)
    assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values())
    assert "tags" in (wp.profile.__doc__ or "") and "collectors" in (wp.profile.__doc__ or "")
    from wattprof.api import Profile

    assert "speed=1" not in (Profile.__doc__ or "")  # no option that does not exist


def test_step_and_mark_outside_any_profile_do_nothing(tmp_path):
    code = ("import wattprof\n"
            "with wattprof.step(tokens=5, label='x') as s:\n    s['tokens'] = 6\n"
            "wattprof.mark(tokens=1)\nprint('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
    assert not (tmp_path / "wattprof-runs").exists()  # no run was created behind the user's back

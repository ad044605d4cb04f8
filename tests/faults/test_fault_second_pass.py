"""Issue 12, second pass of faults and bad input: races on the run directory, secrets on the
command line, collectors and samplers that die, runs left behind by a crashed recorder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from conftest import wattprof
from faultkit import meta

from wattprof.errors import RunError
from wattprof.run import RunWriter


def _claim(out, barrier: threading.Barrier, won: list[str], lost: list[str]) -> None:
    barrier.wait()
    try:
        won.append(RunWriter.create(out, name="racer").meta["id"])
    except RunError as e:
        lost.append(str(e))


def test_two_writers_racing_for_one_directory_exactly_one_wins(tmp_path):
    """Item 5: claiming a run directory is atomic (link(2) of a complete meta.json): of writers
    started at the same instant on the same --out, exactly one gets it, the others a RunError."""
    for attempt in range(20):
        out = tmp_path / f"run{attempt}"
        barrier = threading.Barrier(4)
        won: list[str] = []
        lost: list[str] = []
        threads = [threading.Thread(target=_claim, args=(out, barrier, won, lost)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(lost) == 3, (won, lost)
        assert all("already holds a run" in m for m in lost)
        assert json.loads((out / "meta.json").read_text())["id"] == won[0]
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_two_record_processes_on_the_same_out_one_is_refused(tmp_path):
    """Item 5 through the CLI: the second `record --out SAME` says the directory holds a run."""
    run = tmp_path / "run"
    env = dict(os.environ)
    env.pop("WATTPROF_RUN_DIR", None)
    cmd = [sys.executable, "-m", "wattprof", "record", "-q", "--out", str(run), "-c", "nvml-replay", "--",
           sys.executable, "-c", "import time; time.sleep(1.5)"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in outs)
    assert codes[0] == 0 and codes[1] != 0, outs
    assert any("already holds a run" in err for _, err in outs)
    m = meta(run)
    assert m["status"] == "finished"


@pytest.mark.parametrize("args, hidden", [
    (["--password=hunter2", "--epochs", "1"], "hunter2"),
    (["--hf-token", "hf_abcdef123456"], "hf_abcdef123456"),
    (["API_KEY=sk-live-0123456789"], "sk-live-0123456789"),
    (["--client-secret", "s3cr3t-value"], "s3cr3t-value"),
])
def test_secret_looking_arguments_are_redacted_in_meta_and_every_report(tmp_path, args, hidden):
    """Decided in issue 12: values of arguments whose names look secret (password, token, key,
    secret) are recorded as *** in meta.json, so no report (text, JSON, Markdown, HTML) shows
    them; the program itself receives the real values."""
    run = tmp_path / "run"
    seen = tmp_path / "argv.json"
    child = f"import json, sys; json.dump(sys.argv[1:], open({str(seen)!r}, 'w'))"
    p = wattprof("record", "-q", "--out", str(run), "-c", "nvml-replay", "--", sys.executable, "-c", child, *args)
    assert p.returncode == 0, p.stderr
    assert json.loads(seen.read_text()) == args  # the program got the real value
    m = meta(run)
    assert "***" in " ".join(m["command"])
    assert hidden not in " ".join(m["command"])
    for fmt in ("text", "json", "markdown", "html"):
        r = wattprof("report", str(run), "--format", fmt)
        assert r.returncode == 0, r.stderr
        assert hidden not in r.stdout
    for f in run.rglob("*"):
        if f.is_file():
            assert hidden.encode() not in f.read_bytes(), f

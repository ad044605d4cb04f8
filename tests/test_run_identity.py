"""The run a recorded script belongs to: its name and tags, from the command line and from the
script's own ``wattprof.profile(name, tags=...)``."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import wattprof

from wattprof.naming import default_run_name, merge_identity

BENCH = """
import wattprof
with wattprof.profile("train-bench", tags={"benchmark": "train-bench", "model": "8b"}) as prof:
    with prof.step(tokens=10, label="train"):
        pass
"""


@pytest.mark.parametrize("command,name", [
    (["python", "bench.py", "--epochs", "1"], "bench"),
    (["/usr/bin/python3.11", "-u", "jobs/bench.py"], "bench"),
    (["python", "-m", "pkg.train"], "train"),
    (["./serve.sh"], "serve"),
    (["torchrun", "--nproc_per_node=8", "train.py"], "train"),
    (["env", "A=1", "python", "b.py"], "b"),
    (["sleep", "5"], "sleep"),
    (["/venv/bin/python", "-c", "import time; time.sleep(1)"], "python"),
])
def test_default_name_is_the_script_or_executable_stem(command, name):
    assert default_run_name(command) == name


def meta(run):
    return json.loads((run / "meta.json").read_text())


def test_the_scripts_profile_names_and_tags_the_recorded_run(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text(BENCH)
    run = tmp_path / "run"
    p = wattprof("record", "-o", str(run), "-c", "nvml-replay", "-t", "commit=abc", "-q", "--",
                 sys.executable, str(script))
    assert p.returncode == 0, p.stderr
    m = meta(run)
    assert m["name"] == "train-bench"
    assert m["tags"] == {"commit": "abc", "benchmark": "train-bench", "model": "8b"}
    assert "note:" not in p.stderr  # nothing conflicted
    # nightly groups the run under the script's benchmark, not under "python"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["benchmark"] == "train-bench" and summary["name"] == "train-bench"


def test_without_a_profile_name_the_run_is_named_after_the_script(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text("import wattprof\nwith wattprof.step(tokens=1):\n    pass\n")
    run = tmp_path / "run"
    p = wattprof("record", "-o", str(run), "-c", "nvml-replay", "-q", "--", sys.executable, str(script))
    assert p.returncode == 0, p.stderr
    assert meta(run)["name"] == "bench"


def test_command_line_wins_conflicts_and_says_so(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text(BENCH)
    run = tmp_path / "run"
    p = wattprof("record", "-o", str(run), "-c", "nvml-replay", "-n", "mine", "-t", "model=70b", "-q", "--",
                 sys.executable, str(script))
    assert p.returncode == 0, p.stderr
    m = meta(run)
    assert m["name"] == "mine"
    assert m["tags"] == {"model": "70b", "benchmark": "train-bench"}
    notes = [x for x in p.stderr.splitlines() if "note:" in x]
    assert any("'mine'" in n and "'train-bench'" in n for n in notes), p.stderr
    assert any("model='70b'" in n and "model='8b'" in n for n in notes), p.stderr
    # the conflicts are kept in the run too
    events = "".join(f.read_text() for f in run.glob("events-*.jsonl"))
    assert events.count("identity_conflict") == 2


def test_merge_identity_is_pure_and_keeps_the_first_inner_name():
    ident = merge_identity("python", {}, name_given=False,
                           inner=[("a", {"x": "1"}), ("b", {"x": "2", "y": "3"})])
    assert ident.name == "a" and ident.tags == {"x": "1", "y": "3"}
    assert len(ident.notes) == 2 and "'b'" in ident.notes[0] and "x='1'" in ident.notes[1]

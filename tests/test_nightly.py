"""History, compare and the nightly regression gate."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import wattprof, wattprof_in_process

from wattprof.clock import ManualClock
from wattprof.collectors.nvml import NvmlReplayCollector
from wattprof.data import path as data_path
from wattprof.formats.steps_jsonl import read_steps_jsonl
from wattprof.recording.recorder import Recorder
from wattprof.reports.summary import load_history, write_summary
from wattprof.run import JsonlAppender, RunWriter

DAY = 86400.0
STEPS = read_steps_jsonl(data_path("steps.jsonl"))


def replay_run(out: Path, name: str, day: int, token_scale: float, tags: dict | None = None) -> Path:
    """A run recorded from the replayed H100 trace (real collector and recorder, manual clock):
    the same joules every time; J/token varies through the tokens the workload reports."""
    clock = ManualClock()
    c = NvmlReplayCollector(clock=clock, start="trace")
    trace = c.nvml.trace
    clock.set(trace.t_first)
    w = RunWriter.create(out, name=name, tags={"benchmark": name, **(tags or {})}, clock_time=trace.t_first)
    w.meta["started_at"] = 1.79e9 + day * DAY  # one run a night
    rec = Recorder(w, [c], interval=0.2, clock=clock)
    rec.start(background=False)
    for t in np.arange(trace.t_first, trace.t_last, 0.2):
        clock.set(float(t))
        rec.sample_once()
    rec.stop()
    steps = JsonlAppender(out / "steps-0-1.jsonl")
    for r in STEPS.itertuples(index=False):
        steps.append({"t_start": r.t_start, "t_end": r.t_end, "label": r.label,
                      "tokens": None if math.isnan(r.tokens) else r.tokens * token_scale})
    steps.close()
    w.finalize(status="finished", exit_code=0, ended_at=trace.t_last)
    write_summary(out)
    return out


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    for day in range(15):
        # steady benchmark with +/-1 % jitter; the last night's tokens drop so J/token rises 12 %
        scale = (1 + 0.01 * math.sin(day)) if day < 14 else 1 / 1.12
        replay_run(root / f"steady-{day:02d}", "steady", day, scale)
        # noisy benchmark: +/-6 % night to night, and the last night is inside that noise (+5 %)
        noisy = (1 + 0.06 * (-1) ** day) if day < 14 else 1 / 1.05
        replay_run(root / f"noisy-{day:02d}", "noisy", day, noisy)
    return root


def test_nightly_flags_exactly_the_regression_and_exits_1(history):
    p = wattprof_in_process("nightly", str(history), "--threshold", "5", "-f", "json", "--fail-on-regression")
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["regressions"] == ["steady"]
    by = {b["benchmark"]: b for b in doc["benchmarks"]}
    assert by["steady"]["change"]["change_pct"] == pytest.approx(12.0, abs=1.5)
    assert by["noisy"]["change"]["verdict"] == "ok" and by["noisy"]["change"]["noise_pct"] > 10
    assert len(by["steady"]["series"]) == 15
    # without the flag the gate reports but does not fail
    assert wattprof_in_process("nightly", str(history)).returncode == 0


def test_nightly_median_baseline_and_metric_choice(history):
    doc = json.loads(wattprof_in_process("nightly", str(history), "--baseline", "median:7", "-f", "json", check=True).stdout)
    assert doc["regressions"] == ["steady"]
    doc = json.loads(wattprof_in_process("nightly", str(history), "--metric", "energy_j", "-f", "json", check=True).stdout)
    assert doc["regressions"] == []  # the joules did not change, only the tokens


@pytest.mark.chromium
def test_nightly_html_renders_in_chromium_with_one_trend_plot_per_benchmark(history, tmp_path, chromium):
    from chromium import open_in_chromium

    out = tmp_path / "nightly.html"
    wattprof_in_process("nightly", str(history), "-o", str(out), check=True)
    html = out.read_text()
    # nothing is loaded from elsewhere (XML namespace URIs inside the SVG are names, not requests)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html) and "<script" not in html
    page = open_in_chromium(chromium, out, tmp_path / "profile")
    assert page.errors == [] and page.scripts == 0
    assert page.svgs == 2  # one trend plot per benchmark
    assert "steady" in page.text and "noisy" in page.text and "regression" in page.text
    assert not [u for u in page.requests if not u.startswith(("file://", "data:"))]
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(page.screenshot)).convert("RGB")
    colors = im.getcolors(maxcolors=1 << 24) or []
    assert len(colors) > 100 and 1 - max(colors)[0] / (im.width * im.height) > 0.05


def test_corrupt_and_half_written_runs_are_skipped_with_a_warning(history, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(history, root)
    (root / "steady-03" / "meta.json").write_text("{not json")
    (root / "steady-03" / "summary.json").unlink()
    half = root / "noisy-20"
    half.mkdir()
    (half / "meta.json").write_text(json.dumps({"format": 1, "name": "noisy", "status": "recording",
                                                "tags": {"benchmark": "noisy"}, "started_at": 1.9e9}))
    p = wattprof_in_process("nightly", str(root), "-f", "json")
    assert p.returncode == 0, p.stderr
    assert "steady-03" in p.stderr and "noisy-20" in p.stderr
    doc = json.loads(p.stdout)
    assert {b["benchmark"] for b in doc["benchmarks"]} == {"steady", "noisy"}
    assert any("steady-03" in w for w in doc["warnings"])


def test_nothing_to_compare_exits_3(tmp_path):
    one = replay_run(tmp_path / "only", "alone", 0, 1.0)
    assert wattprof_in_process("nightly", str(one)).returncode == 3


def test_summaries_are_recomputed_when_missing(history, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(history / "steady-00", root)
    (root / "summary.json").unlink()
    (s,) = load_history([root])
    assert s.benchmark == "steady" and (root / "summary.json").is_file()


def test_compare_shows_minus_10_pct_for_the_scaled_label_only(tmp_path):
    run_a = tmp_path / "a"
    wattprof("demo", "--speed", "20", "--out", str(run_a), check=True)
    run_b = tmp_path / "b"
    shutil.copytree(run_a, run_b)
    (run_b / "summary.json").unlink(missing_ok=True)
    # scale the energy counter's increments inside the train span by 0.9
    steps = pd.concat(pd.read_json(f, lines=True) for f in run_b.glob("steps-*.jsonl"))
    tr = steps[steps["label"] == "train"]
    t0, t1 = tr["t_start"].min(), tr["t_end"].max()
    (pq,) = run_b.glob("samples-*.parquet")
    df = pd.read_parquet(pq)
    e = df["energy_j"].to_numpy()
    t = df["t"].to_numpy()
    inc = np.diff(e, prepend=e[0])
    # an increment between two samples is split by the fraction of that interval inside the train span
    prev_t = np.concatenate([[t[0]], t[:-1]])
    inside = np.clip(np.minimum(t, t1) - np.maximum(prev_t, t0), 0, None) / np.maximum(t - prev_t, 1e-12)
    df["energy_j"] = e[0] + np.cumsum(inc * (1 - 0.1 * inside))
    df.to_parquet(pq, index=False)
    doc = json.loads(wattprof_in_process("compare", str(run_a), str(run_b), "-f", "json", check=True).stdout)
    energy = {k: next(r for r in v if r["what"] == "energy_j")["change_pct"] for k, v in doc["sections"].items()}
    # edges are interpolated inside a sampling interval: at most ~0.025 x one interval's energy each
    assert energy["train"] == pytest.approx(-10.0, abs=0.2)
    for label in ("train_stalled", "membound", "decode"):
        assert abs(energy[label]) < 0.2
    md = wattprof_in_process("compare", str(run_a), str(run_b), "--format", "markdown", check=True).stdout
    assert "| energy_j |" in md and re.search(r"\| -(10\.[0-2]|9\.[89]) % \|", md)

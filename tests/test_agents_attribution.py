"""Energy per request and per agent task under concurrency: the rule, its conservation, and the
real H100 serving capture's requests as GenAI spans grouped into tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import H100_SERVE, fixture_dir, wattprof_in_process
from hypothesis import given, settings
from hypothesis import strategies as st
from otlpkit import serve_tasks, write_lines

from wattprof.analysis.align import energy_over, merge_intervals
from wattprof.analysis.attribution import agent_energy, shares
from wattprof.analysis.energy import EnergyCurve

EMPTY = (np.empty(0), np.empty(0))


def curve(power: list[float], dt: float = 1.0) -> EnergyCurve:
    """Piecewise-constant power (W) over consecutive dt-second slots from t=0."""
    t = np.arange(len(power) + 1) * dt
    return EnergyCurve("gpu:0", "counter", t, np.concatenate([[0.0], np.cumsum(np.asarray(power) * dt)]))


def test_two_overlapping_calls_split_equally_and_conserve() -> None:
    c = curve([100.0] * 10)
    s = shares([c], (np.array([0.0, 2.0]), np.array([4.0, 6.0])), EMPTY, EMPTY)
    # [0,2): A alone 200 J; [2,4): both, 100 J each; [4,6): B alone 200 J
    assert s.llm_j == pytest.approx([300.0, 300.0])
    assert s.llm_j.sum() == pytest.approx(600.0) == s.llm_union_j


def test_call_alone_gets_its_span_and_tool_and_wait_are_apart() -> None:
    c = curve([50.0, 200.0, 200.0, 60.0, 60.0, 200.0, 50.0, 50.0])
    s = shares([c], (np.array([1.0, 5.0]), np.array([3.0, 6.0])), (np.array([3.0]), np.array([4.0])),
               (np.array([0.5]), np.array([7.0])))
    assert s.llm_j == pytest.approx([400.0, 200.0])
    assert s.tool_j == pytest.approx([60.0])
    # waits: [0.5,1) 25 J + [4,5) 60 J + [6,7) 50 J
    assert s.wait_j == pytest.approx([135.0])
    assert s.llm_j.sum() + s.tool_j.sum() + s.wait_j.sum() == pytest.approx(float(c.between(0.5, 7.0)))


def test_first_token_splits_prefill_from_decode() -> None:
    c = curve([300.0, 100.0, 100.0, 100.0])
    s = shares([c], (np.array([0.0]), np.array([4.0])), EMPTY, EMPTY, llm_first_token=np.array([1.0]))
    assert s.llm_prefill_j == pytest.approx([300.0])
    assert s.llm_j == pytest.approx([600.0])


intervals = st.lists(st.tuples(st.floats(0, 50), st.floats(0, 20)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(calls=intervals, power=st.lists(st.floats(10, 700), min_size=60, max_size=60))
def test_shares_sum_to_the_energy_over_the_union(calls: list[tuple[float, float]], power: list[float]) -> None:
    c = curve(power)
    t0 = np.array([a for a, _ in calls])
    t1 = t0 + np.array([d for _, d in calls])
    s = shares([c], (t0, t1), EMPTY, (t0 - 1.0, t1 + 1.0))
    u0, u1 = merge_intervals(t0, t1)
    union = float(energy_over([c], u0, u1).sum())
    assert s.llm_j.sum() == pytest.approx(union, rel=1e-9, abs=1e-6)
    assert (s.llm_j >= -1e-9).all()
    k0, k1 = merge_intervals(t0 - 1.0, t1 + 1.0)
    assert s.llm_j.sum() + s.wait_j.sum() == pytest.approx(float(energy_over([c], k0, k1).sum()), rel=1e-9, abs=1e-6)


def test_task_of_a_run_adds_up_calls_tools_and_waits() -> None:
    c = curve([100.0] * 20)
    steps = pd.DataFrame([
        {"t_start": 1.0, "t_end": 3.0, "call": "llm", "label": "m", "task_id": "a", "task_name": "A",
         "task_start": 0.0, "task_end": 8.0, "prompt_tokens": 10, "output_tokens": 5},
        {"t_start": 3.0, "t_end": 5.0, "call": "tool", "label": "tool", "task_id": "a", "task_name": "A",
         "task_start": 0.0, "task_end": 8.0},
        {"t_start": 2.0, "t_end": 4.0, "call": "llm", "label": "m", "task_id": "b", "task_name": "B",
         "task_start": 2.0, "task_end": 4.0, "prompt_tokens": 1, "output_tokens": 1},
    ])
    a = agent_energy(steps, [c])
    assert a is not None
    t = {x.name: x for x in a.tasks}
    assert t["A"].llm_energy_j == pytest.approx(150.0)  # 100 alone + 50 shared
    assert t["B"].llm_energy_j == pytest.approx(150.0)  # 50 shared + 100 alone (tool time taken by B's call)
    assert t["A"].tool_energy_j == pytest.approx(100.0)  # [4,5)
    assert t["A"].wait_energy_j == pytest.approx(400.0)  # [0,1) + [5,8)
    assert sum(x.energy_j for x in a.tasks) == pytest.approx(800.0) == a.union_j
    assert t["A"].tool_s == pytest.approx(2.0) and t["A"].wait_s == pytest.approx(4.0)
    assert a.by_model["m"].output_tokens == 6 and a.by_model["m"].j_per_input_token is None


# ---- the real serving capture -----------------------------------------------------------------------


def _counter(path: Path) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(path / "nvml_samples_10ms.csv")
    return df["t"].to_numpy(float), df["energy_mj"].to_numpy(float) / 1e3


@pytest.mark.parametrize(("per_task", "min_alone"), [(2, 1), (3, 0)])
def test_serving_capture_tasks_match_the_counter(tmp_path: Path, per_task: int, min_alone: int) -> None:
    d = fixture_dir(H100_SERVE)
    reqs = [json.loads(x) for x in (d / "requests_wallclock.jsonl").read_text().splitlines() if x.strip()]
    spans = write_lines(tmp_path / "spans.jsonl", serve_tasks(reqs, per_task))
    run = tmp_path / "run"
    wattprof_in_process("import", str(run), "--samples", str(d / "nvml_samples_10ms.csv"), check=True)
    p = wattprof_in_process("import", str(run), "--steps", str(spans), check=True)  # format auto-detected
    assert "otlp-json" in p.stderr
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    tasks = rep["tasks"]
    assert len(tasks) == -(-len(reqs) // per_task)
    # token totals exact
    assert sum(t["output_tokens"] for t in tasks) == sum(r["output_tokens"] for r in reqs)
    assert sum(t["input_tokens"] for t in tasks) == sum(r["prompt_tokens"] for r in reqs)
    t, e = _counter(d)

    def truth(a: float, b: float) -> float:
        return float(np.interp(b, t, e) - np.interp(a, t, e))

    spans_ = sorted((x["t_start"], x["t_end"], x["energy_j"]) for x in tasks)
    starts = np.array([s[0] for s in spans_])
    ends = np.array([s[1] for s in spans_])
    alone = 0
    for i, (a, b, ej) in enumerate(spans_):
        others = np.delete(np.arange(len(spans_)), i)
        if not ((starts[others] < b) & (ends[others] > a)).any():
            alone += 1
            assert ej == pytest.approx(truth(a, b), rel=0.02)
    assert alone >= min_alone
    # overlapping tasks conserve energy: each cluster's tasks add up to the counter over its union
    u0, u1 = merge_intervals(starts, ends)
    for a, b in zip(u0, u1, strict=True):
        inside = sum(ej for s0, s1, ej in spans_ if s0 >= a and s1 <= b)
        assert inside == pytest.approx(truth(a, b), rel=0.02)
    total = sum(x["energy_j"] for x in tasks)
    assert total == pytest.approx(sum(truth(a, b) for a, b in zip(u0, u1, strict=True)), rel=0.001)
    m = rep["by_model"]["gpt2-24l"]
    assert m["calls"] == len(reqs) and m["j_per_input_token"] > 0 and m["j_per_output_token"] > 0

"""vLLM bench-serve results as steps, and clock alignment, on the real H100 serving fixture.

``requests_wallclock.jsonl`` holds the same requests on the wall clock: the truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import H100_SERVE

from wattprof.analysis.clock_offset import OffsetEstimate, refine_offset
from wattprof.errors import InputError
from wattprof.formats.nvml_trace import read_nvml_trace
from wattprof.formats.vllm_bench import DETAIL_KEYS, VllmBench, read_vllm_bench, sniff

FIX = H100_SERVE
BENCH = FIX / "vllm_bench_detailed.json"


@pytest.fixture(scope="module")
def bench() -> VllmBench:
    return read_vllm_bench(BENCH)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return pd.read_json(FIX / "requests_wallclock.jsonl", lines=True).sort_values("request").reset_index(drop=True)


@pytest.fixture(scope="module")
def true_offset(bench: VllmBench, truth: pd.DataFrame) -> float:
    d = truth["t_start"].to_numpy() - np.asarray(bench.start_times)
    assert np.ptp(d) < 1e-4  # one clock offset for all requests
    return float(np.median(d))


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    g = read_nvml_trace(FIX / "nvml_samples_10ms.csv").gpus[0]
    return pd.DataFrame({
        "t": g["t"].to_numpy(float),
        "device": "gpu:0",
        "util_pct": g["util_gpu"].to_numpy(float),
        "power_w": g["power_instant_mw"].to_numpy(float) / 1000.0,
    })


def start_errors(steps: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Recovered minus true start per request (matched by the request's index in the file)."""
    s = steps.set_index("step")["t_start"]
    return s.loc[truth["request"]].to_numpy() - truth["t_start"].to_numpy()


def write_variant(tmp_path: Path, name: str, **changes: object) -> Path:
    obj = json.loads(BENCH.read_text())
    for k, v in changes.items():
        if v is None:
            obj.pop(k, None)
        else:
            obj[k] = v
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


# --- reading --------------------------------------------------------------------------------
def test_sniff(tmp_path: Path) -> None:
    assert sniff(BENCH)
    assert sniff(str(BENCH))
    assert sniff(json.loads(BENCH.read_text()))
    assert not sniff(FIX / "nvml_samples_10ms.csv")
    assert not sniff(FIX / "phases.json")  # JSON, but a list of phases
    assert not sniff({"t_start": 1.0, "t_end": 2.0})
    assert not sniff(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"date": "20261122-120555", "duration": ')
    assert not sniff(bad)


def test_read_detailed(bench: VllmBench, truth: pd.DataFrame) -> None:
    assert bench.detailed
    assert bench.completed == 26 == len(bench.start_times) == len(truth)
    assert bench.total_output_tokens == 4608 and bench.total_input_tokens == 12416
    assert bench.duration == pytest.approx(67.3747, abs=1e-3)
    assert bench.input_lens == truth["prompt_tokens"].tolist()
    assert bench.output_lens == truth["output_tokens"].tolist()
    # ttft + sum(itls) is the request's latency on the wall clock too (same host, two clocks).
    lat = (truth["t_end"] - truth["t_start"]).to_numpy()
    assert np.max(np.abs(bench.latencies - lat)) < 1e-3


def test_date_zone_matches_fixture(bench: VllmBench, truth: pd.DataFrame) -> None:
    """``date`` is stamped after the run: UTC (offset 0) is the zone that puts it just after the
    last request; any other zone is hours away."""
    last_end = float(truth["t_end"].max())
    phases = json.loads((FIX / "phases.json").read_text())
    run_end = max(p["t_end"] for p in phases)  # the benchmark's clock stopped here
    assert bench.end_wall <= run_end < bench.end_wall + 1.0  # 1 s resolution, stamped after the end
    assert 0.0 < bench.end_wall - last_end < 10.0
    east = read_vllm_bench(BENCH, utc_offset_h=1.0)
    assert east.end_wall == bench.end_wall - 3600.0
    assert not 0.0 < east.end_wall - last_end < 10.0
    west = read_vllm_bench(BENCH, utc_offset_h=-5.5)
    assert west.end_wall == bench.end_wall + 5.5 * 3600.0


def test_steps_from_detailed(bench: VllmBench, truth: pd.DataFrame) -> None:
    steps = bench.steps()
    assert len(steps) == 26
    for c in ("step", "t_start", "t_end", "tokens", "label", "rank", "prompt_tokens", "output_tokens",
              "t_first_token"):
        assert c in steps.columns
    assert steps["tokens"].sum() == bench.total_output_tokens  # J per output token needs all of them
    assert (steps["label"] == "serve").all()
    assert (steps["t_start"] < steps["t_first_token"]).all() and (steps["t_first_token"] < steps["t_end"]).all()
    assert steps["t_start"].is_monotonic_increasing
    # Per-request shape matches the truth exactly; only the clock offset is unknown.
    s = steps.set_index("step").loc[truth["request"]]
    assert np.allclose(s["t_end"] - s["t_start"], truth["t_end"] - truth["t_start"], atol=1e-3)
    assert np.allclose(s["t_first_token"] - s["t_start"], truth["t_first_token"] - truth["t_start"], atol=1e-3)
    assert (s["prompt_tokens"].to_numpy() == truth["prompt_tokens"].to_numpy()).all()
    assert bench.steps(offset=100.0, label="decode")["t_start"].iloc[0] == pytest.approx(
        100.0 + min(bench.start_times))
    assert (bench.steps(label="decode")["label"] == "decode").all()


# --- coarse clock offset --------------------------------------------------------------------
def test_coarse_offset_on_fixture(bench: VllmBench, truth: pd.DataFrame, true_offset: float) -> None:
    """The fixture's benchmark clock includes 4 s idle before the first and after the last
    request, and ``date`` was stamped after the trailing idle: the coarse offset (which assumes
    ``date`` follows the last request within 1 s) is about 3.2 s late here. The reader must see
    this (duration exceeds the request span) and widen its bounds to hold the truth."""
    err = start_errors(bench.steps(), truth)
    coarse_err = float(np.max(np.abs(err)))
    print(f"coarse offset error on fixture: {np.median(err):+.3f} s (max abs {coarse_err:.3f} s)")
    assert bench.slack_s == pytest.approx(8.06, abs=0.05)
    assert any("exceeds the span of the requests" in c for c in bench.caveats)
    lo, hi = bench.offset_bounds
    assert lo < true_offset < hi
    assert coarse_err <= bench.coarse_uncertainty
    # The error is the time from the last request's end to the `date` stamp, less the truncation.
    phases = json.loads((FIX / "phases.json").read_text())
    delay_min = max(p["t_end"] for p in phases) - float(truth["t_end"].max())
    assert delay_min - 1.0 < float(np.median(err)) <= delay_min + 1.0


def test_coarse_offset_within_1s_when_date_follows_last_request(
        tmp_path: Path, bench: VllmBench, truth: pd.DataFrame) -> None:
    """What vLLM writes: clock started at the first request, stopped at the last, `date` stamped
    0.25 s later. Then the coarse offset is within 1 s for every request."""
    last_end_wall = float(truth["t_end"].max())
    starts = np.asarray(bench.start_times)
    p = write_variant(
        tmp_path, "vllm_like.json",
        date=time.strftime("%Y%m%d-%H%M%S", time.gmtime(last_end_wall + 0.25)),
        duration=float(bench.end_times.max() - starts.min()) + 0.002,
    )
    b = read_vllm_bench(p)
    assert not any("exceeds the span" in c for c in b.caveats)
    err = start_errors(b.steps(), truth)
    print(f"coarse offset error, vLLM-like date: max abs {np.max(np.abs(err)):.3f} s")
    assert np.max(np.abs(err)) < 1.0
    lo, hi = b.offset_bounds
    assert hi - lo == pytest.approx(2.0, abs=0.01)
    assert b.coarse_uncertainty == pytest.approx(1.0, abs=0.01)


# --- refined clock offset -------------------------------------------------------------------
def test_refined_offset_on_fixture(bench: VllmBench, samples: pd.DataFrame, truth: pd.DataFrame,
                                   true_offset: float) -> None:
    t0 = time.perf_counter()
    est = refine_offset(bench.steps(offset=0.0), samples, bench.coarse_offset, bounds=bench.offset_bounds,
                        coarse_uncertainty_s=bench.coarse_uncertainty)
    elapsed = time.perf_counter() - t0
    assert isinstance(est, OffsetEstimate)
    refined = start_errors(bench.steps(offset=est.offset_s), truth)
    coarse = start_errors(bench.steps(), truth)
    r_err, c_err = float(np.median(refined)), float(np.median(coarse))
    print(f"refined: error {r_err:+.4f} s, uncertainty {est.uncertainty_s:.3f} s, {est.method}, "
          f"score {est.score:.3f}, {elapsed * 1000:.0f} ms; coarse error {c_err:+.3f} s; {est.note}")
    assert est.method.startswith("xcorr:") and "util_pct" in est.method  # every varying signal adds evidence
    assert abs(r_err) < abs(c_err)
    assert abs(r_err) <= est.uncertainty_s
    assert est.uncertainty_s < bench.coarse_uncertainty
    assert est.uncertainty_s >= 0.1  # never below half the 0.2 s utilisation refresh period
    assert abs(est.offset_s - true_offset) == pytest.approx(abs(r_err), abs=1e-6)


def test_refined_offset_vllm_like_default_search(tmp_path: Path, bench: VllmBench, samples: pd.DataFrame,
                                                 truth: pd.DataFrame) -> None:
    p = write_variant(
        tmp_path, "vllm_like.json",
        date=time.strftime("%Y%m%d-%H%M%S", time.gmtime(float(truth["t_end"].max()) + 0.25)),
        duration=float(bench.end_times.max() - min(bench.start_times)) + 0.002,
    )
    b = read_vllm_bench(p)
    est = refine_offset(b.steps(offset=0.0), samples, b.coarse_offset)  # coarse +/- 2 s
    r_err = float(np.median(start_errors(b.steps(offset=est.offset_s), truth)))
    c_err = float(np.median(start_errors(b.steps(), truth)))
    print(f"vLLM-like: coarse error {c_err:+.3f} s, refined {r_err:+.4f} +/- {est.uncertainty_s:.3f} s")
    assert est.method.startswith("xcorr:") and "util_pct" in est.method  # every varying signal adds evidence
    assert abs(r_err) < abs(c_err) and abs(r_err) <= est.uncertainty_s


def test_refine_power_only_is_right_or_says_date(bench: VllmBench, samples: pd.DataFrame,
                                                  true_offset: float) -> None:
    est = refine_offset(bench.steps(offset=0.0), samples[["t", "device", "power_w"]], bench.coarse_offset,
                        bounds=bench.offset_bounds, coarse_uncertainty_s=bench.coarse_uncertainty)
    print(f"power only: {est.method} error {est.offset_s - true_offset:+.4f} +/- {est.uncertainty_s:.3f} s")
    if est.method == "date":
        assert est.offset_s == bench.coarse_offset
    else:
        assert est.method == "xcorr:power_w"
        assert abs(est.offset_s - true_offset) <= est.uncertainty_s


def test_refine_window_missing_truth_does_not_guess(bench: VllmBench, samples: pd.DataFrame,
                                                   true_offset: float) -> None:
    """coarse +/- 2 s on the fixture misses the truth (3.2 s away): no confident wrong answer."""
    est = refine_offset(bench.steps(offset=0.0), samples, bench.coarse_offset, search_s=2.0)
    assert est.method == "date" or abs(est.offset_s - true_offset) <= est.uncertainty_s
    if est.method == "date":
        assert (est.offset_s, est.uncertainty_s) == (bench.coarse_offset, 1.0)
        assert est.note


def test_refine_flat_signal_keeps_coarse(bench: VllmBench, samples: pd.DataFrame) -> None:
    flat = samples.assign(util_pct=5.0, power_w=115.0)
    est = refine_offset(bench.steps(offset=0.0), flat, bench.coarse_offset)
    assert est == OffsetEstimate(bench.coarse_offset, 1.0, "date", est.score, est.note)
    assert "no varying" in est.note


def test_refine_idle_only_keeps_coarse(bench: VllmBench, samples: pd.DataFrame, true_offset: float) -> None:
    """GPU readings from before the first request only: nothing to match, so the coarse offset stays."""
    idle = samples[samples["t"] < true_offset + min(bench.start_times) - 0.5]
    assert len(idle) > 300
    est = refine_offset(bench.steps(offset=0.0), idle, bench.coarse_offset)
    assert est.method == "date" and est.offset_s == bench.coarse_offset


def test_refine_shuffled_readings_keep_coarse(bench: VllmBench, samples: pd.DataFrame) -> None:
    """The same readings in random order (no time structure): no significant match anywhere."""
    rng = np.random.default_rng(7)
    shuffled = samples.assign(util_pct=rng.permutation(samples["util_pct"].to_numpy()),
                              power_w=rng.permutation(samples["power_w"].to_numpy()))
    est = refine_offset(bench.steps(offset=0.0), shuffled, bench.coarse_offset, bounds=bench.offset_bounds,
                        coarse_uncertainty_s=bench.coarse_uncertainty)
    assert est.method == "date" and est.offset_s == bench.coarse_offset, est


# --- non-detailed and malformed results -----------------------------------------------------
def test_non_detailed_gives_one_window(tmp_path: Path, bench: VllmBench) -> None:
    drop = dict.fromkeys((*DETAIL_KEYS, "errors"))
    b = read_vllm_bench(write_variant(tmp_path, "summary.json", **drop))
    assert not b.detailed
    steps = b.steps()
    assert len(steps) == 1
    row = steps.iloc[0]
    assert row["t_end"] == bench.end_wall
    assert row["t_end"] - row["t_start"] == pytest.approx(bench.duration)
    assert row["tokens"] == 4608 and row["prompt_tokens"] == 12416 and row["requests"] == 26
    assert any("1 s resolution" in c and "after the run" in c for c in b.caveats)
    with pytest.raises(ValueError):
        b.steps(offset=1.0)
    with pytest.raises(ValueError):
        _ = b.coarse_offset


def test_not_a_vllm_result(tmp_path: Path) -> None:
    with pytest.raises(InputError) as ei:
        read_vllm_bench(FIX / "phases.json")
    assert str(FIX / "phases.json") in str(ei.value) and "object" in str(ei.value)
    p = tmp_path / "other.json"
    p.write_text(json.dumps({"date": "20261122-120555", "duration": 3.0, "completed": 1}))
    with pytest.raises(InputError) as ei:
        read_vllm_bench(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: ") and "'total_output_tokens'" in msg and "\n" not in msg
    with pytest.raises(InputError, match="file not found"):
        read_vllm_bench(tmp_path / "absent.json")


def test_malformed_json_names_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text('{\n  "date": "20261122-120555",\n  "duration": 67.3,,\n  "completed": 1\n}\n')
    with pytest.raises(InputError) as ei:
        read_vllm_bench(p)
    assert ei.value.line == 3 and ei.value.path == str(p)
    assert str(ei.value).startswith(f"{p}:3: ")


def test_mismatched_lists(tmp_path: Path, bench: VllmBench) -> None:
    p = write_variant(tmp_path, "short.json", ttfts=bench.ttfts[:-1])
    with pytest.raises(InputError, match=r"different lengths: .*ttfts=25"):
        read_vllm_bench(p)
    p = write_variant(tmp_path, "nolens.json", output_lens=None)
    with pytest.raises(InputError, match="'output_lens'"):
        read_vllm_bench(p)


@pytest.mark.parametrize(("key", "value", "expect"), [
    ("date", "2026-11-22 12:05:55", "'date'"),
    ("duration", "67", "'duration'"),
    ("completed", 2.5, "'completed'"),
    ("start_times", [None] * 26, r"'start_times'\[0\]"),
])
def test_bad_values(tmp_path: Path, key: str, value: object, expect: str) -> None:
    with pytest.raises(InputError, match=expect):
        read_vllm_bench(write_variant(tmp_path, "bad.json", **{key: value}))


def test_failed_requests_left_out(tmp_path: Path, bench: VllmBench) -> None:
    obj = json.loads(BENCH.read_text())
    errors = list(obj["errors"])
    errors[0] = "HTTP 500"
    lens = list(obj["output_lens"])
    lens[0] = 0
    p = write_variant(tmp_path, "failed.json", errors=errors, output_lens=lens, completed=25, failed=1,
                      total_output_tokens=obj["total_output_tokens"] - obj["output_lens"][0])
    b = read_vllm_bench(p)
    steps = b.steps()
    assert len(steps) == 25 and 0 not in set(steps["step"])
    assert steps["tokens"].sum() == b.total_output_tokens
    assert any("1 failed request" in c for c in b.caveats)

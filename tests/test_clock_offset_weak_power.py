"""Clock-offset refinement where the power contrast is small: every signal adds its evidence.

The shared H100 serving capture, with its power signal attenuated toward idle (10 % of its
contrast, whole watts: batch-1 decoding a few watts above idle) and no utilisation column (a MIG
instance reports none): power alone cannot place the requests sharper than the coarse offset;
power and memory activity together do, and the report carries the offset as JSON keys."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import H100_SERVE, wattprof_in_process

from wattprof.analysis.clock_offset import refine_offset
from wattprof.formats.nvml_trace import read_nvml_trace
from wattprof.formats.vllm_bench import read_vllm_bench


def _weak_samples() -> pd.DataFrame:
    g = read_nvml_trace(H100_SERVE / "nvml_samples_10ms.csv").gpus[0]
    p = g["power_instant_mw"].to_numpy(float) / 1000.0
    idle = float(np.quantile(p, 0.02))
    return pd.DataFrame({"t": g["t"].to_numpy(float), "device": "gpu:0",
                         "power_w": np.round(idle + 0.1 * (p - idle)),
                         "mem_util_pct": g["util_mem"].to_numpy(float)})


def test_weak_power_contrast_is_refined_with_every_signal():
    bench = read_vllm_bench(H100_SERVE / "vllm_bench_detailed.json")
    truth = pd.read_json(H100_SERVE / "requests_wallclock.jsonl", lines=True).sort_values("request")
    true_offset = float(np.median(truth["t_start"].to_numpy() - np.asarray(bench.start_times)))
    samples = _weak_samples()
    est = refine_offset(bench.steps(offset=0.0), samples, bench.coarse_offset, bounds=bench.offset_bounds,
                        coarse_uncertainty_s=1.0)
    assert est.method.startswith("xcorr:") and "power_w" in est.method and "mem_util_pct" in est.method, est.note
    assert abs(est.offset_s - true_offset) <= est.uncertainty_s < 1.0
    alone = refine_offset(bench.steps(offset=0.0), samples[["t", "device", "power_w"]], bench.coarse_offset,
                          bounds=bench.offset_bounds, coarse_uncertainty_s=1.0)
    assert alone.method == "date"  # power alone is no sharper than the coarse offset here


def test_the_report_carries_the_offset_and_no_advice_to_refine_after_refining(tmp_path):
    run = tmp_path / "r"
    wattprof_in_process("import", str(run), "--samples", str(H100_SERVE / "nvml_samples_10ms.csv"), "--steps",
             str(H100_SERVE / "vllm_bench_detailed.json"), check=True)
    rep = json.loads(wattprof_in_process("report", str(run), "--format", "json", check=True).stdout)
    (clock,) = rep["step_clocks"].values()
    assert clock["offset_method"].startswith("xcorr:") and clock["offset_uncertainty_s"] < 1.0
    assert isinstance(clock["offset_s"], float) and clock["offset_signals"]
    assert not any("refine it against GPU activity" in f for f in rep["flags"])

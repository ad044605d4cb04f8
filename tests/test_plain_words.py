"""Reports say durations a person reads: never "did no work for 0 s"."""

from __future__ import annotations

import json

import pandas as pd
from conftest import H100, fixture_dir

from wattprof.analysis.bottleneck import classify_windows


def test_a_short_idle_window_says_its_duration_in_ms():
    from test_bottleneck import nvml_samples

    d = fixture_dir(H100)
    samples, limits = nvml_samples(d)
    idle = next(p for p in json.loads((d / "phases.json").read_text()) if p["phase"].startswith("idle"))
    t0 = idle["t_start"] + 1.0
    windows = pd.DataFrame([{"label": "pause", "t_start": t0, "t_end": t0 + 0.4}])
    v = classify_windows(samples, windows, limits, None)["pause"]
    assert v.verdict == "idle"
    assert "for 400 ms" in v.suggestion and "for 0 s" not in v.suggestion

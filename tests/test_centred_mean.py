"""The idle rule's busy fraction (kernels seen in the samples within +/- 1 s) is computed with two
``searchsorted`` instead of pandas' centred time-based rolling window: the same numbers, ties at the
window's edges included (times on a 10 Hz grid land exactly 1 s apart)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wattprof.analysis.idle import centred_mean


@pytest.mark.parametrize("window_s", [2.0, 1.0, 0.003])
def test_centred_mean_is_pandas_centred_rolling_mean(window_s):
    rng = np.random.default_rng(7)
    for trial in range(150):
        n = int(rng.integers(1, 300))
        step = float(rng.choice([0.001, 0.05, 0.1, 0.25, 0.5, 1.0]))
        t = 1.7e9 + np.sort(np.round(rng.integers(0, 400, n) * step, 6))  # exact ties and duplicates
        if trial % 3 == 0:
            t = np.sort(t + rng.normal(0, 1e-4, n))
        v = (rng.random(n) > 0.5).astype(float)
        want = pd.Series(v, index=pd.to_datetime(t, unit="s")).rolling(
            f"{int(window_s * 1000)}ms", center=True, min_periods=1).mean().to_numpy()
        got = centred_mean(v, t, window_s)
        assert np.array_equal(got, want), (trial, np.flatnonzero(got != want)[:5])
        at = np.flatnonzero(rng.random(n) > 0.7)
        assert np.array_equal(centred_mean(v, t, window_s, at), want[at])

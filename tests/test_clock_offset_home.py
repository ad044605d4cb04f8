"""Clock offsets have one home (wattprof.analysis.clock_offset): the multi-node merge and the
foreign-clock step import use the same estimators and the same FFT cross-correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import H100, fixture_dir

from wattprof import merge
from wattprof.analysis import clock_offset
from wattprof.analysis.clock_offset.fft import cross_correlation, fast_len


@pytest.mark.parametrize(("nu", "nv"), [(1, 1), (7, 1), (1, 5), (50, 17), (17, 50), (243, 244)])
def test_the_fft_cross_correlation_is_the_direct_sum_at_every_lag(nu: int, nv: int) -> None:
    rng = np.random.default_rng(nu * 1000 + nv)
    u, v = rng.normal(size=nu), rng.normal(size=nv)
    np.testing.assert_allclose(cross_correlation(u, v), np.correlate(u, v, "full"), atol=1e-9)
    n = nu + nv
    m = fast_len(n)
    assert m >= n and all(p in (2, 3) for p in _factors(m))


def _factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def test_the_merge_uses_the_analysis_estimators() -> None:
    assert merge.offset_from_power is clock_offset.offset_from_power
    assert merge.offset_from_steps is clock_offset.offset_from_steps
    assert merge.ClockOffset is clock_offset.ClockOffset


def test_a_node_clock_shifted_by_a_known_offset_is_found_from_the_h100_power() -> None:
    raw = pd.read_csv(fixture_dir(H100) / "nvml_samples_10ms.csv")
    ref = pd.DataFrame({"t": raw["t"], "device": "gpu:0", "power_w": raw["power_instant_mw"] / 1e3})
    node = ref.assign(t=ref["t"] + 2.35)  # the same GPU trace seen on a clock 2.35 s ahead
    est = clock_offset.offset_from_power(node, ref)
    assert est is not None and est.method == "power" and est.score is not None and est.score > 0.9
    assert est.offset_s == pytest.approx(2.35, abs=est.uncertainty_s + 1e-9)

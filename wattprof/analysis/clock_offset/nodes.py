"""Clock offsets between the nodes of a multi-node run (``wattprof merge``), each node against the
reference node:

1. ``steps``: in synchronous data-parallel training every rank ends global step ``k`` at the
   same moment (the gradient all-reduce synchronises them), so the median difference of the end
   times of the same (label, step) on the two nodes is the clock offset; it is trusted when at
   least 3 steps match and their differences agree (spread under a quarter of a step, or 50 ms).
2. ``power``: otherwise, the lag that maximises the correlation of the node's total accelerator
   power with the reference node's (nodes running the same synchronous job draw power in step),
   trusted when the correlation exceeds 0.6.

Pure functions of DataFrames (schema columns); :mod:`wattprof.merge` applies what they find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ... import schema
from ...power_columns import preferred_power_column
from .fft import cross_correlation

#: Correlation a power cross-correlation must reach to be trusted.
MIN_POWER_CORRELATION = 0.6
#: Steps that must match for the step-based offset.
MIN_MATCHED_STEPS = 3
#: Largest clock offset searched by power cross-correlation (s).
MAX_POWER_LAG_S = 60.0
POWER_GRID_S = 0.05


@dataclass
class ClockOffset:
    """``node clock = reference clock + offset_s`` (within ``+/- uncertainty_s``)."""

    offset_s: float
    uncertainty_s: float
    method: str  # reference | steps | power | none
    matches: int = 0  # matched steps (steps) or overlapping grid points (power)
    score: float | None = None  # correlation (power)
    corrected: bool = False
    note: str = ""


def _step_ends(steps: pd.DataFrame) -> pd.Series:
    """Median end time per (label, step) key."""
    if steps.empty or "step" not in steps.columns:
        return pd.Series(dtype=float)
    s = steps[steps["step"].notna()]
    if s.empty:
        return pd.Series(dtype=float)
    key = s["label"].astype(str) + "\x00" + s["step"].astype(str)
    return s["t_end"].groupby(key).median()


def offset_from_steps(steps: pd.DataFrame, ref_steps: pd.DataFrame) -> ClockOffset | None:
    """The clock offset of ``steps`` against ``ref_steps`` from matching global steps, or None."""
    a, b = _step_ends(steps), _step_ends(ref_steps)
    common = a.index.intersection(b.index)
    if len(common) < MIN_MATCHED_STEPS:
        return None
    d = (a[common] - b[common]).to_numpy(float)
    off = float(np.median(d))
    spread = float(1.4826 * np.median(np.abs(d - off)))
    dur = (ref_steps["t_end"] - ref_steps["t_start"]).to_numpy(float)
    typical = float(np.median(dur)) if len(dur) else 0.0
    if spread > max(0.25 * typical, 0.05):
        return None
    return ClockOffset(off, max(spread, 1e-3), "steps", matches=len(common),
                       note=f"median over {len(common)} matching steps")


def _power_grid(samples: pd.DataFrame, h: float) -> tuple[float, np.ndarray] | None:
    """Total accelerator power on a grid of step ``h``: (t0, values)."""
    if samples.empty:
        return None
    acc = samples[samples[schema.DEVICE].astype(str).map(schema.is_accelerator)]
    if acc.empty:
        return None
    col = preferred_power_column(acc, min_values=11)
    if col is None:
        return None
    t0 = float(acc[schema.T].min())
    t1 = float(acc[schema.T].max())
    n = int((t1 - t0) / h) + 1
    if n < 20:
        return None
    grid = t0 + h * np.arange(n)
    total = np.zeros(n)
    for _, dev in acc.groupby(schema.DEVICE):
        d = dev[[schema.T, col]].dropna().sort_values(schema.T)
        if len(d) < 2:
            continue
        total += np.interp(grid, d[schema.T].to_numpy(float), d[col].to_numpy(float))
    return t0, total


def offset_from_power(samples: pd.DataFrame, ref_samples: pd.DataFrame, *, h: float = POWER_GRID_S,
                      max_lag_s: float = MAX_POWER_LAG_S) -> ClockOffset | None:
    """The clock offset of ``samples`` against ``ref_samples`` by cross-correlating their total
    accelerator power (Pearson correlation over the overlap at each lag, all lags by FFT)."""
    a, b = _power_grid(samples, h), _power_grid(ref_samples, h)
    if a is None or b is None:
        return None
    (ta, x), (tb, y) = a, b
    xc = cross_correlation
    ones_x, ones_y = np.ones_like(x), np.ones_like(y)
    cnt = np.rint(xc(ones_x, ones_y))
    sx, sy = xc(x, ones_y), xc(ones_x, y)
    sxx, syy = xc(x * x, ones_y), xc(ones_x, y * y)
    sxy = xc(x, y)
    lags = (np.arange(len(cnt)) - (len(y) - 1)) * h  # x[i + lag] pairs with y[i]
    min_overlap = max(int(10.0 / h), 20)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / cnt
        vx = sxx - sx * sx / cnt
        vy = syy - sy * sy / cnt
        r = cov / np.sqrt(vx * vy)
    # sample times: x at ta + h*i, y at tb + h*j; pairing x[j + k] with y[j] means an event seen by
    # y at tb + h*j is seen by x at ta + h*(j + k): offset = ta - tb + lag
    offsets = ta - tb + lags
    ok = (cnt >= min_overlap) & np.isfinite(r) & (np.abs(offsets) <= max_lag_s)
    if not ok.any():
        return None
    r = np.where(ok, r, -np.inf)
    best = int(np.argmax(r))
    score = float(r[best])
    if score < MIN_POWER_CORRELATION:
        return None
    return ClockOffset(float(offsets[best]), h, "power", matches=int(cnt[best]), score=score,
                       note=f"power cross-correlation r={score:.2f}")

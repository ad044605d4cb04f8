"""When did the accelerators actually idle? Unlabelled time is not idle time.

Time outside every label's span is *unlabelled*: the GPU may be loading a model, compiling,
serving requests nobody logged, or training without step marks. Only the part where every
accelerator sits at its idle floor and does nothing is *idle*.

A sample is idle when its power is at most ``POWER_RATIO`` x the device's idle floor and its
activity is low: NVML utilisation at most ``UTIL_PCT`` (a few % of utilisation at the floor is
still idle: the driver's own housekeeping shows up there) with kernels in under ``BUSY_FRAC`` of
the samples within ``BUSY_WINDOW_S`` around it (tiny kernels all the time, batch-1 decoding, are
work), GPM SM activity (when sampled) under
``SM_ACTIVE_PCT``. The floor is the one the bottleneck rules use (``idle_power_w`` when given,
else the 2nd percentile of the device's power, at most 30 % of its limit). Without a power
column a sample is idle on activity alone (utilisation under ``bottleneck.Thresholds.idle_util_pct``).

Each sample stands for the time half-way to its neighbours (at most ``MAX_HOLD_S`` to either
side); idle intervals of several devices are intersected (all idle). Pure functions, no I/O.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..power_columns import MEASURED_POWER
from ..schema import DEVICE, T
from .bottleneck import DEFAULT_THRESHOLDS, idle_floor

POWER_RATIO = 1.3
UTIL_PCT = 10.0
SM_ACTIVE_PCT = 5.0
MAX_HOLD_S = 1.0
#: ... and kernels seen in under half the samples within +/- 1 s
BUSY_WINDOW_S = 2.0
BUSY_FRAC = 0.5


def _column(df: pd.DataFrame, *names: str) -> np.ndarray | None:
    for n in names:
        if n in df.columns and df[n].notna().any():
            col = df[n]
            return col.to_numpy() if col.dtype == np.float64 else pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    return None


def _filled(v: np.ndarray) -> np.ndarray:
    """Missing readings take the last one before them (the first ones: the first after them)."""
    if not np.isnan(v).any():
        return v
    return pd.Series(v).ffill().bfill().to_numpy()


def device_idle(df: pd.DataFrame, floor_w: float,
                within: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Idle intervals ``(t0, t1)`` of one device's samples (sorted by ``t``). ``within``: sorted,
    disjoint windows ``(w0, w1)``; only the samples whose time can overlap one of them are looked
    at, so the intervals are exact where they overlap the windows (intersect them with the
    windows) and cost nothing elsewhere."""
    t = df[T].to_numpy(dtype=float)
    if len(t) == 0:
        return np.empty(0), np.empty(0)
    power = _column(df, *MEASURED_POWER)
    util = _column(df, "util_pct")
    sm = _column(df, "sm_active_pct")
    if power is None and util is None:
        return np.empty(0), np.empty(0)
    n = len(t)
    # the samples looked at (all, or those whose time can reach a window) and the time each stands
    # for: half-way to its neighbours, at most MAX_HOLD_S to either side
    if within is None:
        at = None
        ts = t
        half = np.minimum(np.diff(t) / 2.0, MAX_HOLD_S)
        lo = t - np.concatenate([[0.0], half])
        hi = t + np.concatenate([half, [0.0]])
        del half
        idle = np.ones(n, dtype=bool)
    else:
        w0, w1 = within
        at = union_of_ranges(np.searchsorted(t, w0 - MAX_HOLD_S, "left"),
                             np.searchsorted(t, w1 + MAX_HOLD_S, "right"), n)
        ts = t[at]
        lo = ts - np.where(at > 0, np.minimum((ts - t[np.maximum(at - 1, 0)]) / 2.0, MAX_HOLD_S), 0.0)
        hi = ts + np.where(at < n - 1, np.minimum((t[np.minimum(at + 1, n - 1)] - ts) / 2.0, MAX_HOLD_S), 0.0)
        idle = _overlapping(lo, hi, w0, w1)

    def mine(v: np.ndarray) -> np.ndarray:
        return v if at is None else v[at]

    if power is not None and np.isfinite(floor_w):
        # a row without a power reading (e.g. a GPM-only row) takes the last reading before it
        idle &= mine(_filled(power)) <= POWER_RATIO * floor_w
        util_limit = UTIL_PCT
    else:
        util_limit = DEFAULT_THRESHOLDS.idle_util_pct
    if sm is not None:
        idle &= ~(mine(_filled(sm)) >= SM_ACTIVE_PCT)
    if util is not None:
        u = _filled(util)
        idle &= mine(u) <= util_limit
        # kernels in most utilisation periods around the sample (batch-1 decoding) is work, not idle;
        # asked only where every other test says idle
        ask = np.flatnonzero(idle)
        if len(ask):
            busy = (u > 0).astype(float)
            idle[ask] = centred_mean(busy, t, BUSY_WINDOW_S, ask if at is None else at[ask]) < BUSY_FRAC
    lo, hi = lo[idle], hi[idle]
    if not len(lo):
        return lo, hi
    # merge touching intervals
    new = np.concatenate([[True], lo[1:] > hi[:-1] + 1e-9])
    idx = np.flatnonzero(new)
    return lo[idx], np.maximum.reduceat(hi, idx)


def _overlapping(lo: np.ndarray, hi: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Which intervals ``[lo_i, hi_i]`` (both non-decreasing) overlap one of the sorted, disjoint
    windows ``[w0_j, w1_j]`` by more than a point: per window a range of intervals."""
    out = np.zeros(len(lo), dtype=bool)
    out[union_of_ranges(np.searchsorted(hi, w0, "right"), np.searchsorted(lo, w1, "left"), len(lo))] = True
    return out


def union_of_ranges(first: np.ndarray, stop: np.ndarray, n: int) -> np.ndarray:
    """The sorted indices (of ``0..n-1``) in any of the ranges ``[first_i, stop_i)``: listed when
    they are few, else marked on the whole range."""
    keep = stop > first
    first, stop = first[keep], stop[keep]
    total = int((stop - first).sum())
    if total * 4 < n:
        lengths = stop - first
        starts = np.cumsum(lengths) - lengths
        idx = np.arange(total) + np.repeat(first - starts, lengths)
        return np.unique(idx)
    marks = np.bincount(first, minlength=n + 1) - np.bincount(stop, minlength=n + 1)
    return np.flatnonzero(np.cumsum(marks[:-1]) > 0)


def _ticks(t: np.ndarray) -> tuple[np.ndarray, str]:
    """``pd.to_datetime(t, unit="s").asi8`` and its unit, ten times faster on float seconds: whole
    seconds times 1e9 plus the fraction rounded to 9 decimals, as pandas converts them. Checked
    against pandas on the first and last values; pandas itself where they differ."""
    t = np.asarray(t, dtype=float)
    probe = np.concatenate([t[:2048], t[-2048:]]) if len(t) > 4096 else t
    ref = pd.to_datetime(probe, unit="s")
    if ref.unit == "ns" and np.isfinite(t).all() and (len(t) == 0 or np.abs(t).max() < 9e9):
        base = t.astype(np.int64)
        ticks = base * 1_000_000_000 + (np.round(t - base, 9) * 1e9).astype(np.int64)
        fast_probe = np.concatenate([ticks[:2048], ticks[-2048:]]) if len(t) > 4096 else ticks
        if np.array_equal(fast_probe, ref.asi8):
            return ticks, "ns"
    idx = pd.to_datetime(t, unit="s")
    return idx.asi8, str(idx.unit)


def centred_mean(v: np.ndarray, t: np.ndarray, window_s: float, at: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``v`` over the samples within ``(t_i - window_s / 2, t_i + window_s / 2]`` of each
    (sorted) ``t_i`` (of the sorted indices ``at`` only, when given), on the timestamps pandas would
    use: what its centred time-based ``rolling(...).mean()`` gives for values without NaN, from two
    ``searchsorted`` and a cumulative sum. With ``at``, only the samples within ``window_s`` of
    those asked take part: every window lies inside them, so the means are the same."""
    if at is not None and len(at) and len(t):
        near = union_of_ranges(np.searchsorted(t, t[at] - window_s, "left"),
                               np.searchsorted(t, t[at] + window_s, "right"), len(t))
        if len(near) < len(t):
            return centred_mean(v[near], t[near], window_s, np.searchsorted(near, at))
    ticks, unit = _ticks(t)  # the index pandas would roll over, in its own unit
    width = pd.Timedelta(int(round(window_s * 1e9)), "ns").as_unit(unit)._value
    half = width // 2  # an odd width closes both ends (pandas GH 43997)
    q = ticks if at is None else ticks[at]
    start = np.searchsorted(ticks, q - half - (width % 2), "right")
    end = np.searchsorted(ticks, q + half, "right")
    cum = np.concatenate([[0.0], np.cumsum(v)])
    return (cum[end] - cum[start]) / (end - start)


def intersect(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection of two sorted, disjoint interval lists."""
    if not len(a0) or not len(b0):
        return np.empty(0), np.empty(0)
    # every pair that overlaps: for each a, the b's from the first ending after a0 to the last starting before a1
    j0 = np.searchsorted(b1, a0, "right")
    j1 = np.searchsorted(b0, a1, "left")
    counts = np.maximum(j1 - j0, 0)
    ia = np.repeat(np.arange(len(a0)), counts)
    ib = np.concatenate([np.arange(x, y) for x, y in zip(j0, j1, strict=True) if y > x]) if counts.sum() else \
        np.empty(0, dtype=int)
    lo = np.maximum(a0[ia], b0[ib])
    hi = np.minimum(a1[ia], b1[ib])
    keep = hi > lo
    return lo[keep], hi[keep]


def idle_intervals(samples: pd.DataFrame, devices: list[str], power_limits: dict[str, float] | None = None,
                   idle_power_w: dict[str, float] | None = None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                         dict[str, float]]:
    """Intervals where every one of ``devices`` idles, and the idle floor used per device (W)."""
    out: tuple[np.ndarray, np.ndarray] | None = None
    floors: dict[str, float] = {}
    for dev in devices:
        df = samples[samples[DEVICE] == dev].sort_values(T, kind="stable")
        if df.empty:
            continue
        given = (idle_power_w or {}).get(dev)
        limit = float((power_limits or {}).get(dev, np.nan))
        floor = float(given) if given is not None else idle_floor(df, limit, DEFAULT_THRESHOLDS)
        floors[dev] = floor
        iv = device_idle(df, floor)
        out = iv if out is None else intersect(*out, *iv)
    if out is None:
        return (np.empty(0), np.empty(0)), floors
    return out, floors


def unlabelled_windows(t_first: float, t_last: float, s0: np.ndarray, s1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The parts of ``[t_first, t_last]`` outside the merged label spans ``[s0_i, s1_i]`` (sorted, disjoint)."""
    edges = np.concatenate([[t_first], np.ravel(np.column_stack([s0, s1])), [t_last]])
    g0, g1 = np.clip(edges[0::2], t_first, t_last), np.clip(edges[1::2], t_first, t_last)
    keep = g1 - g0 > 0
    return g0[keep], g1[keep]

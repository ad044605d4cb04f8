"""Per-device cumulative energy curves, and energy over any window from them.

A curve is ``E(t)``: joules since the device's first sample, defined at sample times and linear
in between, so the energy of a window ``[a, b]`` is ``E(b) - E(a)`` with interpolation at both
edges (``np.interp``: any number of windows at once).

Sources, best first (schema.ENERGY_SOURCES): the device's hardware counter (``energy_j``), else
the averaged (1 s trailing mean) power reading deconvolved (``power_avg_w``), else integrated
instant power (``power_w``), else an estimate (``power_est_w``). The deconvolved average ranks
above instant power because it measures better on the real H100 traces (benchmarks/accuracy.py:
worst labelled phase 2.1 % vs 6.3 % from nvidia-smi's 100 ms CSV). The counter curve is the counter as read at each sample (stamped just
before the read), linear in between: on the real H100 capture this reproduces counter deltas read
at phase edges to 0.01 % at 10 ms sampling and about 1 % at 100 ms (benchmarks/accuracy.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..power_columns import POWER_PREFERENCE
from .integrate import counter_increments, trapezoids
from .periods import gap_limit


@dataclass
class EnergyCurve:
    device: str
    source: schema.EnergySource
    t: np.ndarray
    e_j: np.ndarray
    #: quality notes found while building the curve (counter resets, ...)
    notes: list[str] = field(default_factory=list)

    @property
    def t_first(self) -> float:
        return float(self.t[0]) if len(self.t) else float("nan")

    @property
    def t_last(self) -> float:
        return float(self.t[-1]) if len(self.t) else float("nan")

    @property
    def total_j(self) -> float:
        return float(self.e_j[-1] - self.e_j[0]) if len(self.e_j) else 0.0

    def at(self, t: np.ndarray | float) -> np.ndarray:
        """Cumulative energy at ``t`` (clamped to the curve's time range)."""
        if not len(self.t):
            return np.zeros_like(np.asarray(t, dtype=float))
        return np.interp(t, self.t, self.e_j)

    def between(self, t0: np.ndarray | float, t1: np.ndarray | float) -> np.ndarray:
        """Energy in joules over each window ``[t0, t1]``."""
        return self.at(t1) - self.at(t0)


def choose_source(dev: pd.DataFrame) -> schema.EnergySource:
    """The best energy source one device's samples support."""
    for source in schema.ENERGY_SOURCES:
        col = schema.SOURCE_COLUMN[source]
        if col in dev.columns and dev[col].notna().sum() >= 2:
            return source
    return "none"


def counter_curve(t: np.ndarray, counter_j: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    ok = ~np.isnan(counter_j)
    # a copy of the times: the curve outlives the samples it came from
    t, c = (t.copy(), counter_j) if ok.all() else (t[ok], counter_j[ok])
    notes: list[str] = []
    d, back = counter_increments(c)
    if back:
        notes.append(f"energy counter went backwards {back} time(s) (reset?): those steps counted as 0")
    e = np.empty(len(d) + 1)
    e[0] = 0.0
    np.cumsum(d, out=e[1:])
    return t, e, notes




def segments(t: np.ndarray) -> list[slice]:
    """Runs of sorted sample times with no gap (:func:`.periods.gap_limit`: power is not integrated
    across a gap; energy stays flat there and the report flags it) between neighbours."""
    if len(t) < 3:
        return [slice(0, len(t))]
    d = np.diff(t)
    limit = gap_limit(d)
    cuts = np.flatnonzero(d > limit) + 1
    edges = np.concatenate([[0], cuts, [len(t)]])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-segment curves; energy is flat across the gaps between them."""
    parts = [(tp, ep) for tp, ep in parts if len(tp)]
    if len(parts) == 1 and parts[0][1][0] == 0.0:  # one segment starting at 0: as it is
        tp, ep = parts[0]
        return (tp.copy() if tp.base is not None else tp), ep  # never a view of the samples (they are freed)
    ts, es, base = [], [], 0.0
    for tp, ep in parts:
        if not len(tp):
            continue
        ts.append(tp)
        es.append(ep - ep[0] + base)
        base = float(es[-1][-1])
    if not ts:
        return np.empty(0), np.empty(0)
    return np.concatenate(ts), np.concatenate(es)


def power_curve(t: np.ndarray, power_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid integral of instant power, not across gaps in the samples."""
    ok = ~np.isnan(power_w)
    t, p = (t, power_w) if ok.all() else (t[ok], power_w[ok])
    if len(t) < 2:
        return t, np.zeros_like(t)
    parts = []
    for sl in segments(t):
        ts, ps = t[sl], p[sl]
        parts.append((ts, np.concatenate([[0.0], np.cumsum(trapezoids(ts, ps))])))
    return _join(parts)


AVERAGE_WINDOW_S = 1.0  # nvmlDeviceGetPowerUsage / nvidia-smi power.draw: trailing 1 s mean (REFERENCE.md)


def averaged_power_curve(t: np.ndarray, p_avg: np.ndarray, *, window_s: float = AVERAGE_WINDOW_S,
                         grid_s: float = 0.1, t_inst: np.ndarray | None = None,
                         p_inst: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative energy from a trailing-mean power reading, undoing the average.

    A reading at ``t`` is the mean power over ``[t - window_s, t]``, so ``E(t) - E(t - window_s) =
    window_s * P_avg(t)``: on a grid of step ``grid_s`` (``K = window_s / grid_s`` points per
    window), ``E[j] = E[j - K] + window_s * P_avg[j]`` (strided cumulative sums). Only the first
    window's shape is unknown (taken as constant power). The energy of whole seconds is then as
    exact as the reading itself, wherever phases change inside them; integrating the averaged
    reading directly smears every change by up to a second (+44 % on an idle phase after a busy
    one on the H100 capture), and integrating the instant reading aliases (it averages only 25 ms
    of every 100 ms: +6 % on a phase of short steps with host gaps). benchmarks/accuracy.py.

    Ringing. Each of the ``K`` strided sums is a random walk of its own interpolation errors, so
    the per-cell power carries a pattern that repeats every ``window_s`` and sums to zero over
    any window: invisible to the averaged reading (its null space), but it can put a window's
    mean below every instant reading in it. That pattern is removed: in each ``window_s`` row of
    cells, the cells' deviation from the row's mean is replaced by the instant readings' (when
    given: ``t_inst``/``p_inst``), else by none (flat within the row), the correction smoothed
    over ``ROW_SMOOTHING`` rows. Row sums are unchanged, so every aligned second keeps the
    reading's energy exactly. Cells are then kept within the readings' physical range (never
    below the lowest reading of the device, never above the highest), the change given back
    within the row.

    Short series (under one window) are integrated as they are; gaps (:func:`segments`) split
    the series, with no energy across them."""
    ok = ~np.isnan(p_avg)
    t, p_avg = t[ok], p_avg[ok]
    if len(t) < 2:
        return t, np.zeros_like(t)
    if t_inst is not None and p_inst is not None:
        good = ~np.isnan(p_inst)
        t_inst, p_inst = t_inst[good], p_inst[good]
        if len(t_inst) < 2:
            t_inst = p_inst = None
    parts = [_deconvolve(t[sl], p_avg[sl], window_s, grid_s, t_inst, p_inst) for sl in segments(t)]
    return _join(parts)


#: Rows (of ``window_s``) over which the null-space correction is averaged without instant readings.
ROW_SMOOTHING = 3


def _deconvolve(t: np.ndarray, p_avg: np.ndarray, window_s: float, grid_s: float,
                t_inst: np.ndarray | None, p_inst: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if len(t) < 2:
        return t, np.zeros_like(t)
    k = max(int(round(window_s / grid_s)), 1)
    dt = window_s / k
    if t[-1] - t[0] < window_s + dt:  # under one window: nothing to undo, integrate as it is
        return t, np.concatenate([[0.0], np.cumsum(trapezoids(t, p_avg))])
    n = int(np.ceil((t[-1] - t[0]) / dt)) + 1
    n = ((n + k - 1) // k) * k
    g = t[0] + dt * np.arange(n)
    a = np.interp(g, t, p_avg) * window_s
    e_first = (g[:k] - g[0]) * a[k] / window_s
    rows = a.reshape(-1, k)
    e = (np.cumsum(rows, axis=0) - rows[0] + e_first).ravel()  # row r: e_first + sum_{i=1..r} A
    # per-cell power, cells [g_j, g_j+1), one row per window
    p = np.diff(e, append=e[-1] + (e[-1] - e[-2])) / dt
    p = p.reshape(-1, k)
    dev = p - p.mean(axis=1, keepdims=True)
    smooth = ROW_SMOOTHING
    if t_inst is not None and p_inst is not None:
        q = np.interp(g + dt / 2, t_inst, p_inst).reshape(-1, k)
        dev = dev - (q - q.mean(axis=1, keepdims=True))
        smooth = 1
    if smooth > 1:
        dev[0] = 0.0  # the first window's shape is assumed (constant power), not rung
        if len(dev) > 2:
            kern = np.ones(smooth) / smooth
            pad = np.pad(dev[1:], ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
            dev[1:] = np.apply_along_axis(lambda c: np.convolve(c, kern, mode="valid"), 0, pad)
    p = p - dev
    if t_inst is not None and p_inst is not None:
        # within the envelope of the instant readings around each cell (half a window either side)
        lo, hi = _local_envelope(t_inst, p_inst, g - window_s / 2, g + dt + window_s / 2)
        lo, hi = lo.reshape(-1, k), hi.reshape(-1, k)
    else:  # never below the lowest reading, never above the highest
        lo = np.full_like(p, float(np.min(p_avg)))
        hi = np.full_like(p, float(np.max(p_avg)))
    p = _clip_rows(p, lo, hi)
    e = np.concatenate([[0.0], np.cumsum(p.ravel() * dt)])[:n]
    # the last reading's own time is a point of the curve: E(t) = E(t - window) + window * P_avg(t)
    keep = g <= t[-1] + 1e-9
    g, e = g[keep], e[keep]
    if g[-1] < t[-1] - 1e-9:
        e_end = float(np.interp(t[-1] - window_s, g, e)) + window_s * float(p_avg[-1])
        g, e = np.append(g, t[-1]), np.append(e, max(e_end, e[-1]))
    return g, e - e[0]


def _local_envelope(t: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the readings ``v`` (at sorted ``t``) inside each ``[a_i, b_i]``; the nearest
    reading's value where a window holds none (vectorised: a sparse table of range min/max)."""
    i0 = np.searchsorted(t, a, "left")
    i1 = np.searchsorted(t, b, "right")
    empty = i1 <= i0
    near = np.clip(np.searchsorted(t, (a + b) / 2), 0, len(t) - 1)
    i0 = np.where(empty, near, i0)
    i1 = np.where(empty, near + 1, i1)
    mins, maxs = [v], [v]
    span = 1
    while 2 * span <= len(v):
        mins.append(np.minimum(mins[-1][:-span], mins[-1][span:]))
        maxs.append(np.maximum(maxs[-1][:-span], maxs[-1][span:]))
        span *= 2
    n = i1 - i0
    lvl = np.floor(np.log2(np.maximum(n, 1))).astype(int)
    lo = np.empty(len(a))
    hi = np.empty(len(a))
    for level in np.unique(lvl):
        m = lvl == level
        w = 1 << int(level)
        lo[m] = np.minimum(mins[level][i0[m]], mins[level][i1[m] - w])
        hi[m] = np.maximum(maxs[level][i0[m]], maxs[level][i1[m] - w])
    return lo, hi


def _clip_rows(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Cells within [lo, hi]; what clipping removed from a row goes back to the row's other cells
    in proportion to their room (a row's energy is unchanged unless the whole row is out)."""
    c = np.clip(p, lo, hi)
    excess = (p - c).sum(axis=1, keepdims=True)  # > 0: energy to add back, < 0: to take away
    room_up, room_down = hi - c, c - lo
    room = np.where(excess > 0, room_up, room_down)
    tot = room.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(tot > 0, room / tot, 0.0)
    return c + share * np.where(np.abs(excess) <= tot, excess, np.sign(excess) * tot)


def device_curve(dev: pd.DataFrame, device: str, source: schema.EnergySource | None = None) -> EnergyCurve:
    """The energy curve of one device's samples (sorted by ``t``) from ``source`` or the best one."""
    src = source or choose_source(dev)
    if src == "none":
        return EnergyCurve(device, "none", np.empty(0), np.empty(0))
    t = dev[schema.T].to_numpy(dtype=float)
    v = dev[schema.SOURCE_COLUMN[src]].to_numpy(dtype=float)
    if src == "counter":
        tc, e, notes = counter_curve(t, v)
        return EnergyCurve(device, src, tc, e, notes)
    if src == "averaged_power":
        ti = pi = None
        if "power_w" in dev.columns and dev["power_w"].notna().sum() >= 2:
            ti, pi = t, dev["power_w"].to_numpy(dtype=float)
        tp, e = averaged_power_curve(t, v, t_inst=ti, p_inst=pi)
        return EnergyCurve(device, src, tp, e)
    tp, e = power_curve(t, v)
    return EnergyCurve(device, src, tp, e)


def curves(samples: pd.DataFrame, sources: dict[str, schema.EnergySource] | None = None) -> dict[str, EnergyCurve]:
    """One curve per device present in ``samples`` (optionally forcing a source per device)."""
    out: dict[str, EnergyCurve] = {}
    if samples.empty:
        return out
    for device, dev in samples.groupby(schema.DEVICE, sort=True):
        dev = dev.sort_values(schema.T, kind="stable")
        out[str(device)] = device_curve(dev, str(device), (sources or {}).get(str(device)))
    return out


def mean_power(samples: pd.DataFrame, device: str) -> tuple[float | None, float | None]:
    """(mean, max) of the device's best power column, for the report; None when it has none."""
    mine = (samples[schema.DEVICE] == device).to_numpy()
    for col in POWER_PREFERENCE:
        if col in samples.columns:
            v = samples[col] if mine.all() else samples.loc[mine, col]  # one column, not a copy of the frame
            if v.notna().any():
                return float(v.mean()), float(v.max())
    return None, None

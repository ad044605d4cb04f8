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
    t, c = t[ok], counter_j[ok]
    notes: list[str] = []
    d = np.diff(c)
    if (d < 0).any():
        notes.append(f"energy counter went backwards {int((d < 0).sum())} time(s) (reset?): those steps counted as 0")
        d = np.clip(d, 0, None)
    e = np.concatenate([[0.0], np.cumsum(d)])
    return t, e, notes


def power_curve(t: np.ndarray, power_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = ~np.isnan(power_w)
    t, p = t[ok], power_w[ok]
    if len(t) < 2:
        return t, np.zeros_like(t)
    e = np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2.0)])
    return t, e


AVERAGE_WINDOW_S = 1.0  # nvmlDeviceGetPowerUsage / nvidia-smi power.draw: trailing 1 s mean (REFERENCE.md)


def averaged_power_curve(t: np.ndarray, p_avg: np.ndarray, *, window_s: float = AVERAGE_WINDOW_S,
                         grid_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative energy from a trailing-mean power reading, undoing the average.

    A reading at ``t`` is the mean power over ``[t - window_s, t]``, so ``E(t) - E(t - window_s) =
    window_s * P_avg(t)``: on a grid of step ``grid_s`` (``K = window_s / grid_s`` points per
    window), ``E[j] = E[j - K] + window_s * P_avg[j]`` (strided cumulative sums). Only the first
    window's shape is unknown (taken as constant power). The energy of whole seconds is then as
    exact as the reading itself, wherever phases change inside them; integrating the averaged
    reading directly smears every change by up to a second (+44 % on an idle phase after a busy
    one on the H100 capture), and integrating the instant reading aliases (it averages only 25 ms
    of every 100 ms: +6 % on a phase of short steps with host gaps). benchmarks/accuracy.py.
    """
    ok = ~np.isnan(p_avg)
    t, p_avg = t[ok], p_avg[ok]
    if len(t) < 2:
        return t, np.zeros_like(t)
    k = max(int(round(window_s / grid_s)), 1)
    dt = window_s / k
    n = int(np.ceil((t[-1] - t[0]) / dt)) + 1
    n = ((n + k - 1) // k) * k
    g = t[0] + dt * np.arange(n)
    a = np.interp(g, t, p_avg) * window_s
    e_first = (g[:k] - g[0]) * a[k] / window_s
    rows = a.reshape(-1, k)
    e = (np.cumsum(rows, axis=0) - rows[0] + e_first).ravel()  # row r: e_first + sum_{i=1..r} A
    keep = g <= t[-1] + 1e-9
    return g[keep], e[keep] - e[0]


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
        tp, e = averaged_power_curve(t, v)
        return EnergyCurve(device, src, tp, e)
    tp, e = power_curve(t, v)
    return EnergyCurve(device, src, tp, e)


def curves(samples: pd.DataFrame, sources: dict[str, schema.EnergySource] | None = None) -> dict[str, EnergyCurve]:
    """One curve per device present in ``samples`` (optionally forcing a source per device)."""
    out = {}
    if samples.empty:
        return out
    for device, dev in samples.groupby(schema.DEVICE, sort=True):
        dev = dev.sort_values(schema.T, kind="stable")
        out[str(device)] = device_curve(dev, str(device), (sources or {}).get(str(device)))
    return out


def mean_power(samples: pd.DataFrame, device: str) -> tuple[float | None, float | None]:
    """(mean, max) of the device's best power column, for the report; None when it has none."""
    dev = samples[samples[schema.DEVICE] == device]
    for col in ("power_w", "power_avg_w", "power_est_w"):
        if col in dev.columns and dev[col].notna().any():
            return float(dev[col].mean()), float(dev[col].max())
    return None, None

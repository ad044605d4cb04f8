"""The GPM half of the NVML replay backend: stand-ins for pynvml's GPM structures and a recorded
``gpm-csv`` capture served as time-weighted means over any two sample times."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: pynvml's ids (``NVML_GPM_METRIC_<NAME>``, nvidia-ml-py's pynvml.py) of the GPM metrics a gpm-csv
#: file can hold, i.e. the keys of ``GPM_COLUMN_MAP``; a test checks them against pynvml.
GPM_METRIC_IDS: dict[str, int] = {
    "SM_UTIL": 2, "SM_OCCUPANCY": 3, "ANY_TENSOR_UTIL": 5, "DRAM_BW_UTIL": 10,
    "PCIE_TX_PER_SEC": 20, "PCIE_RX_PER_SEC": 21, "NVLINK_TOTAL_RX_PER_SEC": 60, "NVLINK_TOTAL_TX_PER_SEC": 61,
}
#: pynvml ``NVML_GPM_METRIC_MAX``: the length of ``c_nvmlGpmMetricsGet_t.metrics``.
GPM_METRIC_MAX = 477
GPM_METRICS_GET_VERSION = 1  # pynvml NVML_GPM_METRICS_GET_VERSION


class ReplayGpmSample:
    """Stands in for pynvml's opaque ``c_nvmlGpmSample_t``: the trace time of its SampleGet."""

    __slots__ = ("t", "handle", "freed")

    def __init__(self) -> None:
        self.t: float | None = None
        self.handle: int | None = None
        self.freed = False


class ReplayGpmMetric:
    """Stands in for pynvml's ``c_nvmlGpmMetric_t`` (metricId, nvmlReturn, value)."""

    __slots__ = ("metricId", "nvmlReturn", "value")

    def __init__(self) -> None:
        self.metricId = 0  # noqa: N815 - pynvml's field names
        self.nvmlReturn = 0  # noqa: N815
        self.value = 0.0


class ReplayGpmMetricsGet:
    """Stands in for pynvml's ``c_nvmlGpmMetricsGet_t``: version, numMetrics, sample1, sample2 and a
    fixed array of :data:`GPM_METRIC_MAX` metrics."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0  # noqa: N815
        self.sample1: ReplayGpmSample | None = None
        self.sample2: ReplayGpmSample | None = None
        self.metrics = [ReplayGpmMetric() for _ in range(GPM_METRIC_MAX)]


@dataclass
class GpmTrack:
    """One GPU's recorded GPM windows as cumulative integrals over one loop of the NVML trace.

    ``x``: window edges (start, end, start, end... non-decreasing); ``fv``/``fc``: cumulative
    integral of each metric (value x seconds) and of its covered seconds at ``x`` (rows), per
    metric (columns). Both are linear between edges, so a mean over [a, b] is two lookups."""

    t0: float
    period: float
    x: np.ndarray
    fv: np.ndarray
    fc: np.ndarray
    column_of_id: dict[int, int]
    has_data: np.ndarray  # per metric: any recorded value at all

    def cumulative(self, p: float) -> tuple[np.ndarray, np.ndarray]:
        loops = max(math.floor((p - self.t0) / self.period), 0) if self.period > 0 else 0
        r = p - loops * self.period
        i = int(np.searchsorted(self.x, r, side="right"))
        if i == 0:
            v, c = np.zeros(self.fv.shape[1]), np.zeros(self.fc.shape[1])
        elif i >= len(self.x):
            v, c = self.fv[-1], self.fc[-1]
        else:
            x0, x1 = self.x[i - 1], self.x[i]
            f = (r - x0) / (x1 - x0) if x1 > x0 else 0.0
            v = self.fv[i - 1] + f * (self.fv[i] - self.fv[i - 1])
            c = self.fc[i - 1] + f * (self.fc[i] - self.fc[i - 1])
        return v + loops * self.fv[-1], c + loops * self.fc[-1]


def gpm_track(windows: np.ndarray, values: np.ndarray, column_of_id: dict[int, int], t0: float,
               period: float) -> GpmTrack:
    """Build a :class:`GpmTrack` from windows ``(n, 2)`` and values ``(n, m)`` (NaN = no value)."""
    order = np.argsort(windows[:, 0], kind="stable")
    s, e, v = windows[order, 0], windows[order, 1], values[order]
    e = np.maximum(np.minimum(e, np.append(s[1:], np.inf)), s)  # overlapping windows: the later wins
    if period > 0:
        s, e = np.clip(s, t0, t0 + period), np.clip(e, t0, t0 + period)
    w = (e - s)[:, None]
    ok = np.isfinite(v)
    vw = np.where(ok, v, 0.0) * w
    cw = ok * w
    cum_v, cum_c = np.cumsum(vw, axis=0), np.cumsum(cw, axis=0)
    x = np.column_stack([s, e]).ravel()
    fv = np.stack([cum_v - vw, cum_v], axis=1).reshape(-1, v.shape[1])
    fc = np.stack([cum_c - cw, cum_c], axis=1).reshape(-1, v.shape[1])
    return GpmTrack(t0=t0, period=period, x=x, fv=fv, fc=fc, column_of_id=column_of_id,
                     has_data=ok.any(axis=0))


def read_gpm_windows(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A gpm-csv file: its samples (:func:`read_gpm_csv`, validated) and, row for row, the
    recorded window bounds ``(n, 2)`` [t_start, t_end] that the samples' midpoints stand for."""
    import pandas as pd

    from ...formats.gpm_csv import GPU_COLUMNS, TIME_COLUMNS, read_gpm_csv
    from ...schema import DEVICE, T

    samples = read_gpm_csv(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    t_start, t_end = (pd.to_numeric(raw[c].str.strip()).to_numpy(dtype=float) for c in TIME_COLUMNS)
    bounds = pd.DataFrame({T: (t_start + t_end) / 2.0, "t_start": t_start, "t_end": t_end})
    gpu_col = next((c for c in GPU_COLUMNS if c in raw.columns), None)
    if gpu_col:
        bounds[DEVICE] = "gpu:" + pd.to_numeric(raw[gpu_col].str.strip()).astype("int64").astype(str)
    else:
        bounds[DEVICE] = samples[DEVICE].iloc[0]
    bounds = bounds.sort_values([DEVICE, T], kind="stable").reset_index(drop=True)  # read_gpm_csv's order
    if not (np.array_equal(bounds[T].to_numpy(), samples[T].to_numpy())
            and (bounds[DEVICE] == samples[DEVICE]).all()):
        raise InputError("gpm-csv windows could not be matched to their samples", path=str(path))
    return samples, bounds[["t_start", "t_end"]].to_numpy(dtype=float)


"""Why a GPU phase cost what it cost: a bottleneck verdict per labelled window or time window.

Pure functions, no I/O. Input is the samples table of :mod:`wattprof.schema` for GPU devices
(``t``, ``device`` and whichever of ``util_pct``, ``mem_util_pct``, ``power_w`` /
``power_avg_w``, ``power_limit_w``, ``sm_clock_mhz``, ``throttle_reasons``, ``sm_active_pct``,
``sm_occupancy_pct``, ``tensor_active_pct``, ``dram_active_pct`` exist). Columns may come at
different rates (NVML every 10-100 ms, GPM every 0.5 s, as rows with the other columns NaN).

Averaging
---------
Every mean is time-weighted (:mod:`.holds`): each sample holds its value from the half-way point to its
previous sample to the half-way point to its next one, but no farther than
max(``HOLD_FACTOR`` = 2.5 median sample periods, ``MIN_HOLD_S`` = 1 s) to either side (NVML
utilisation and power readings are themselves averages over up to 1 s), so a real hole in the
trace stays a hole; the first and last samples reach as far outwards as inwards. For GPM
samples stamped at their window's midpoint (:mod:`wattprof.formats.gpm_csv`) this recovers the
GPM windows exactly. The integral of that step function is piecewise linear, so a
window's mean is ``(F(t1) - F(t0)) / covered time`` with ``F`` the cumulative integral,
evaluated for all windows at once with ``np.interp``. Several windows of one label are pooled
(sums of integrals and of covered time). A column counts for a window only where it covers at
least ``min_coverage`` (50 %) of it. Several GPUs: each device is averaged on its own (power
fraction against its own limit) and the label's evidence is the mean over devices.

The rules themselves (thresholds, the verdict, its reason and suggestion) are in
:mod:`wattprof.analysis.bottleneck_rules`.

Inter-step gaps (``steps``): steps sorted by start; a gap is the time from the latest end so far
to the next step's start when that next step has the same label (a step of another label in
between ends the run, so alternating train/eval phases do not count as gaps). The gap fraction
of a label is its gaps over the wall time of its runs (first start to last end of each run).

The verdict's ``evidence`` holds the numbers the rules used; combine a verdict with the label's
energy (``power_w x duration_s``, or the caller's own energy attribution) to say what the
bottleneck cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pandas as pd

from ..power_columns import MEASURED_POWER, preferred_power_column
from ..schema import DEVICE, T, device_kind
from ..threads import bounded_map
from .bottleneck_rules import DEFAULT_THRESHOLDS, Basis, Thresholds, Verdict, VerdictName, classify
from .holds import Holds, window_integrals
from .neuron_evidence import annotate as annotate_neuron
from .neuron_evidence import neuron_columns
from .segments import label_segments

__all__ = ["DEFAULT_THRESHOLDS", "Basis", "Thresholds", "Verdict", "VerdictName", "classify", "classify_timeline",
           "classify_windows", "combine_evidence", "device_evidence", "gap_fractions", "timeline_windows",
           "verdicts", "windows_from_steps"]

#: Coverage reported in the evidence: share of the window with NVML utilisation / GPM samples.
_COVERAGE_NAMES = {"util_pct:coverage": "nvml_coverage", "sm_active_pct:coverage": "gpm_coverage"}

POWER_CAP_BITS = 0x4 | 0x80  # SW power cap, HW power brake (REFERENCE.md)
THERMAL_BITS = 0x20 | 0x40  # SW thermal, HW thermal slowdown (REFERENCE.md)

GPM_COLUMNS = ("sm_active_pct", "sm_occupancy_pct", "tensor_active_pct", "dram_active_pct")
NVML_COLUMNS = ("util_pct", "mem_util_pct", "sm_clock_mhz", "power_limit_w")
#: Every sample column the evidence reads (with the Neuron columns of :mod:`.neuron_evidence`).
EVIDENCE_COLUMNS = (*NVML_COLUMNS, *GPM_COLUMNS, *MEASURED_POWER, "throttle_reasons",
                    "core_util_min_pct", "core_util_max_pct", "latency_p50_s", "device_latency_p50_s",
                    "runtime_err_per_s")


def _numbers(df: pd.DataFrame, c: str) -> np.ndarray:
    """Column ``c`` as float64 (unreadable values NaN); float64 columns as they are, not copied."""
    col = df[c]
    if col.dtype == np.float64:
        return col.to_numpy()
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64")


def _derived_columns(df: pd.DataFrame) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """Columns to average for one device, indicators included (NaN where the source is NaN), each
    as a function that makes it from arrays already read from ``df`` (numpy only: a helper thread
    may call it); one at a time (a week of one device is 6 M samples: 48 MB per column)."""
    for c in (*NVML_COLUMNS, *GPM_COLUMNS):
        if c in df.columns:
            yield c, partial(_same, _numbers(df, c))
    power_col = preferred_power_column(df, measured_only=True)
    if power_col is not None:
        yield "power_w", partial(_same, _numbers(df, power_col))
    if "util_pct" in df.columns:
        yield "busy_time_frac", partial(_busy, _numbers(df, "util_pct"))
    if "throttle_reasons" in df.columns:
        r = _numbers(df, "throttle_reasons")
        yield "power_cap_frac", partial(_any_bit, r, POWER_CAP_BITS)
        yield "thermal_frac", partial(_any_bit, r, THERMAL_BITS)
    for name, v in neuron_columns(df).items():  # Neuron devices: core imbalance, runtime host overhead, errors
        yield name, partial(_same, v)


def _same(v: np.ndarray) -> np.ndarray:
    return v


def _busy(util: np.ndarray) -> np.ndarray:
    """1 where utilisation is above 0, else 0; NaN where it is NaN."""
    out = (util > 0).astype("float64")
    out[np.isnan(util)] = np.nan
    return out


def _any_bit(reasons: np.ndarray, bits: int) -> np.ndarray:
    """1 where the throttle reasons have one of ``bits`` set, else 0; NaN where they are NaN."""
    out = ((np.where(np.isfinite(reasons), reasons, 0.0).astype("int64") & bits) != 0).astype("float64")
    out[np.isnan(reasons)] = np.nan
    return out


def _device_means(
    df: pd.DataFrame, a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_groups: int, min_coverage: float,
    pool: ThreadPoolExecutor | None = None,
) -> dict[str, np.ndarray]:
    """Per group (label), the time-weighted mean of each column over its windows; NaN where the
    column covers less than ``min_coverage`` of the group's time. Adds ``<col>:coverage``.
    ``pool``: threads that integrate two columns at a time (this thread derives them)."""
    if len(df) > 1 and not (np.diff(df[T].to_numpy(dtype="float64")) >= 0).all():
        df = df.sort_values(T, kind="stable")
    t = df[T].to_numpy(dtype="float64")
    span = np.bincount(codes, weights=b - a, minlength=n_groups)
    shared = Holds.of(t, a, b) if len(t) and np.isfinite(t).all() else None

    def one(item: tuple[str, Callable[[], np.ndarray]]) -> tuple[str, np.ndarray, np.ndarray]:
        name, make = item
        v = make()
        if v.strides == (0,) and len(v) and np.isnan(v[0]):
            # a column this device never filled: no integral to take
            iv = ic = np.zeros(len(a))
        else:
            iv, ic = window_integrals(t, v, a, b, shared)
        sv = np.bincount(codes, weights=iv, minlength=n_groups)
        sc = np.bincount(codes, weights=ic, minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = np.where(span > 0, sc / span, 0.0)
            mean = np.where((cov >= min_coverage) & (sc > 0), sv / sc, np.nan)
        return name, mean, cov

    out: dict[str, np.ndarray] = {}
    for name, mean, cov in bounded_map(pool, one, _derived_columns(df)):
        out[name] = mean
        out[f"{name}:coverage"] = cov
    return out


# --- steps ------------------------------------------------------------------------------------


def gap_fractions(steps: pd.DataFrame) -> dict[str, float]:
    """Per label: host time between consecutive steps of the label / the label's wall time.

    Vectorised (a label may have 1e5 steps). See the module docstring for the definition."""
    if steps is None or len(steps) == 0:
        return {}
    s = steps[["t_start", "t_end", "label"]].sort_values(["t_start", "t_end"], kind="stable")
    t0 = s["t_start"].to_numpy(dtype="float64")
    t1 = s["t_end"].to_numpy(dtype="float64")
    lab = s["label"].astype(str).to_numpy()
    end_so_far = np.maximum.accumulate(t1)
    same_next = np.zeros(len(s), dtype=bool)
    same_next[:-1] = lab[1:] == lab[:-1]
    gap = np.zeros(len(s))
    gap[:-1] = np.clip(t0[1:] - end_so_far[:-1], 0.0, None)
    gap = np.where(same_next, gap, 0.0)
    run = np.concatenate([[0], np.cumsum(lab[1:] != lab[:-1])])
    frame = pd.DataFrame({"label": lab, "run": run, "t0": t0, "t1": t1, "gap": gap})
    runs = frame.groupby("run", sort=False).agg(label=("label", "first"), t0=("t0", "min"),
                                                t1=("t1", "max"), gap=("gap", "sum"))
    runs["wall"] = runs["t1"] - runs["t0"]
    per = runs.groupby("label", sort=False)[["gap", "wall"]].sum()
    return {str(k): (float(r.gap / r.wall) if r.wall > 0 else 0.0) for k, r in per.iterrows()}


def windows_from_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """One window per run of consecutive same-label steps: ``label``, ``t_start`` (first start),
    ``t_end`` (last end). The windows include the gaps between the run's steps."""
    return label_segments(steps)[["label", "t_start", "t_end"]]


# --- evidence and classification ---------------------------------------------------------------


def _gpu_devices(samples: pd.DataFrame, devices: Sequence[str] | None) -> list[str]:
    present = [str(d) for d in pd.unique(samples[DEVICE])]
    if devices is not None:
        return [d for d in present if d in set(devices)]
    gpus = [d for d in present if device_kind(d) == "gpu"]
    return gpus or present


#: The idle floor is this percentile of a device's power readings (at most ``idle_floor_max_frac`` x its limit).
IDLE_FLOOR_PERCENTILE = 2


def low_power_reading(df: pd.DataFrame) -> float:
    """The :data:`IDLE_FLOOR_PERCENTILE` th percentile of the device's measured power (NaN without one)."""
    col = preferred_power_column(df, measured_only=True)
    if col is None:
        return float("nan")
    return float(np.nanpercentile(df[col].to_numpy(dtype="float64"), IDLE_FLOOR_PERCENTILE))


def idle_floor(df: pd.DataFrame, limit: float, th: Thresholds, low_reading_w: float | None = None) -> float:
    """The device's idle power floor: its low power reading (:func:`low_power_reading`, or
    ``low_reading_w`` when already taken), at most ``th.idle_floor_max_frac`` x ``limit``."""
    floor = low_power_reading(df) if low_reading_w is None else float(low_reading_w)
    if np.isfinite(floor) and np.isfinite(limit) and limit > 0:
        floor = min(floor, th.idle_floor_max_frac * limit)
    return floor


def device_evidence(df: pd.DataFrame, a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_groups: int,
                    power_limit_w: float = float("nan"), idle_power_w: float | None = None,
                    th: Thresholds = DEFAULT_THRESHOLDS, low_reading_w: float | None = None,
                    pool: ThreadPoolExecutor | None = None) -> dict[str, np.ndarray]:
    """One device's evidence per group of windows ``[a_i, b_i]`` (group ``codes[i]``): each
    column's time-weighted mean and coverage, its power limit, power fraction and idle floor.
    ``df`` holds every sample of the device (the idle floor is a percentile of all of them);
    :func:`combine_evidence` averages several devices. ``low_reading_w``: the device's
    :func:`low_power_reading` when already taken; ``pool``: helper threads (:mod:`wattprof.threads`)."""
    m = _device_means(df, a, b, codes, n_groups, th.min_coverage, pool)
    lim = m.get("power_limit_w")
    lim_arr = np.where(np.isfinite(lim), lim, power_limit_w) if lim is not None else np.full(n_groups, power_limit_w)
    m["power_limit_w"] = lim_arr
    if "power_w" in m:
        with np.errstate(invalid="ignore", divide="ignore"):
            m["power_frac"] = np.where(lim_arr > 0, m["power_w"] / lim_arr, np.nan)
        if idle_power_w is not None:
            floor = float(idle_power_w)
        else:
            known = lim_arr[np.isfinite(lim_arr)]
            floor = idle_floor(df, float(known.max()) if known.size else power_limit_w, th, low_reading_w)
        m["idle_power_w"] = np.full(n_groups, floor)
    return m


def combine_evidence(per_device: list[dict[str, np.ndarray]], span: np.ndarray) -> list[dict[str, float]]:
    """Per group, the evidence averaged over devices (each key over the devices where it is finite),
    with ``duration_s`` (the group's time, ``span``) and ``n_devices``."""
    means: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k in sorted({k for m in per_device for k in m}):
        if k.endswith(":coverage") and k not in _COVERAGE_NAMES:
            continue
        stack = np.vstack([np.asarray(m[k], dtype="float64") for m in per_device if k in m])
        ok = np.isfinite(stack)
        n = ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[_COVERAGE_NAMES.get(k, k)] = (np.where(ok, stack, 0.0).sum(axis=0) / n, n > 0)
    out: list[dict[str, float]] = []
    for g in range(len(span)):
        ev: dict[str, float] = {"duration_s": float(span[g]), "n_devices": float(len(per_device))}
        ev.update({k: float(mean[g]) for k, (mean, ok) in means.items() if ok[g]})
        out.append(ev)
    return out


def verdicts(evidence: list[dict[str, float]], gaps: Sequence[float | None] | None = None,
             th: Thresholds = DEFAULT_THRESHOLDS) -> list[Verdict | None]:
    """The verdict of each group's evidence (and inter-step gap fraction), Neuron notes added."""
    out: list[Verdict | None] = []
    for g, ev in enumerate(evidence):
        v = classify(ev, gaps[g] if gaps is not None else None, th)
        if v is not None:
            annotate_neuron(v)
        out.append(v)
    return out


def _evidence(samples: pd.DataFrame, a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_groups: int,
              power_limits: dict[str, float] | None, idle_power_w: dict[str, float] | None,
              devices: Sequence[str] | None, th: Thresholds) -> list[dict[str, float]]:
    """Per group, the evidence dict averaged over devices (NaN entries dropped)."""
    per_device = [
        device_evidence(samples[samples[DEVICE] == dev], a, b, codes, n_groups,
                        float((power_limits or {}).get(dev, np.nan)), (idle_power_w or {}).get(dev), th)
        for dev in _gpu_devices(samples, devices)]
    return combine_evidence(per_device, np.bincount(codes, weights=b - a, minlength=n_groups))


def _check_samples(samples: pd.DataFrame) -> None:
    missing = [c for c in (T, DEVICE) if c not in samples.columns]
    if missing:
        raise ValueError(f"samples lack column(s) {', '.join(missing)}")


def classify_windows(
    samples: pd.DataFrame,
    windows: pd.DataFrame,
    power_limits: dict[str, float] | None = None,
    steps: pd.DataFrame | None = None,
    *,
    devices: Sequence[str] | None = None,
    idle_power_w: dict[str, float] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Verdict]:
    """A verdict per label of ``windows`` (columns ``label``, ``t_start``, ``t_end``; rows of one
    label are pooled). ``power_limits`` {device: W} is used where ``power_limit_w`` is absent;
    ``steps`` (``t_start``, ``t_end``, ``label``) adds the inter-step gap fraction of each label;
    ``devices`` restricts the devices (default: every ``gpu:*`` device in ``samples``);
    ``idle_power_w`` {device: W} overrides the idle floor estimated from the samples. Labels whose
    windows no utilisation column covers are left out."""
    _check_samples(samples)
    for c in ("label", "t_start", "t_end"):
        if c not in windows.columns:
            raise ValueError(f"windows lack column {c!r}")
    if len(windows) == 0 or len(samples) == 0:
        return {}
    codes, uniques, a, b = label_groups(windows)
    evs = _evidence(samples, a, b, codes, len(uniques), power_limits, idle_power_w, devices, thresholds)
    gaps = gap_fractions(steps) if steps is not None else {}
    found = verdicts(evs, [gaps.get(str(label)) for label in uniques], thresholds)
    return {str(label): v for label, v in zip(uniques, found, strict=True) if v is not None}


def label_groups(windows: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """``(codes, labels, a, b)``: each window's group (its label, in order of appearance) and edges."""
    codes, uniques = pd.factorize(windows["label"].astype(str), sort=False)
    a = windows["t_start"].to_numpy(dtype="float64")
    b = np.maximum(a, windows["t_end"].to_numpy(dtype="float64"))
    return codes, [str(u) for u in uniques], a, b


def timeline_windows(lo: float, hi: float, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of ``window_s`` from ``lo`` to ``hi`` (the last may be shorter)."""
    if not hi > lo:
        return np.empty(0), np.empty(0)
    a = np.arange(lo, hi, window_s)
    return a, np.minimum(a + window_s, hi)


def classify_timeline(
    samples: pd.DataFrame,
    power_limits: dict[str, float] | None = None,
    *,
    window_s: float = 5.0,
    t_start: float | None = None,
    t_end: float | None = None,
    devices: Sequence[str] | None = None,
    idle_power_w: dict[str, float] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[tuple[float, float, Verdict]]:
    """Verdicts for consecutive fixed windows of ``window_s`` seconds from ``t_start`` (default:
    first sample) to ``t_end`` (default: last sample); the last window may be shorter. Windows
    without utilisation data are left out."""
    _check_samples(samples)
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    if len(samples) == 0:
        return []
    t = samples[T].to_numpy(dtype="float64")
    lo = float(np.nanmin(t)) if t_start is None else float(t_start)
    hi = float(np.nanmax(t)) if t_end is None else float(t_end)
    a, b = timeline_windows(lo, hi, window_s)
    if not len(a):
        return []
    evs = _evidence(samples, a, b, np.arange(len(a)), len(a), power_limits, idle_power_w, devices, thresholds)
    return [(float(a[i]), float(b[i]), v) for i, v in enumerate(verdicts(evs, None, thresholds)) if v is not None]

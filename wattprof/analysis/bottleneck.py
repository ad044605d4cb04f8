"""Why a GPU phase cost what it cost: a bottleneck verdict per labelled window or time window.

Pure functions, no I/O. Input is the samples table of :mod:`wattprof.schema` for GPU devices
(``t``, ``device`` and whichever of ``util_pct``, ``mem_util_pct``, ``power_w`` /
``power_avg_w``, ``power_limit_w``, ``sm_clock_mhz``, ``throttle_reasons``, ``sm_active_pct``,
``sm_occupancy_pct``, ``tensor_active_pct``, ``dram_active_pct`` exist). Columns may come at
different rates (NVML every 10-100 ms, GPM every 0.5 s, as rows with the other columns NaN).

Averaging
---------
Every mean is time-weighted: each sample holds its value from the half-way point to its
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

Rules (in this order; thresholds in :class:`Thresholds`, each with a physical meaning)
-------------------------------------------------------------------------------------
``util`` is NVML ``utilization.gpu``: the percent of time at least one kernel was resident.
``busy_time_frac`` is the fraction of time ``util > 0``, i.e. of NVML utilisation periods
(1/6 s to 1 s) in which any kernel ran at all.

==============  ================================================================================
verdict         condition
==============  ================================================================================
idle            util < 5 %, kernels seen in < 25 % of utilisation periods (tolerates the trailing
                average of a busy phase just before), GPM SM activity (if any) < 5 %, and mean
                power <= 1.5 x the device's idle floor (``idle_power_w``, else the 2nd
                percentile of its power in the samples, at most 30 % of its limit); or, not on
                utilisation alone, mean power <= 1.15 x the idle floor with util < 15 %, kernels in
                < 50 % of periods and GPM SM activity (if any) < 5 %: a few % of utilisation at
                the floor is still idle (batch-1 decoding, kernels all the time, is not).
host-bound      the GPU has no kernel resident half of the time or more (util < 50 %: the GPU
                waits for the host more than it works); or the host spends more wall time
                between steps than inside them (inter-step gap fraction >= 50 %); or, with GPM,
                the SMs are active < 25 % of the time kernels are resident (sm_active < 0.25 x
                util, util >= 5 %): kernels too small to fill the GPU, i.e. launch-bound.
memory-bound    GPM: DRAM bandwidth while kernels run (dram_active / util) >= 70 % of peak (the
                achievable HBM peak is ~90 %: within ~20 % of the bandwidth roof) and DRAM
                activity >= tensor activity. NVML only: device memory is read or written during
                >= 85 % of the time a kernel is resident (mem_util / util >= 0.85; a pure
                bandwidth-bound kernel keeps the memory interface busy all the time it runs,
                compute-bound training sits around 0.6-0.7).
compute-bound   otherwise: the GPU is busy and not limited by memory bandwidth.
==============  ================================================================================

Modifiers (``power-capped`` on any verdict but idle, ``thermal-throttled`` on any):

* ``power-capped``: SW power cap (0x4) or HW power brake (0x80) bit set >= 50 % of the time
  (the power limit, not the workload, sets the clock most of the time; 0x4 flickering on and
  off is normal near full load), or mean power >= 95 % of the limit.
* ``thermal-throttled``: SW/HW thermal slowdown bit (0x20/0x40) set >= 10 % of the time (never
  normal: any sustained share means cooling limits speed).

Inter-step gaps (``steps``): steps sorted by start; a gap is the time from the latest end so far
to the next step's start when that next step has the same label (a step of another label in
between ends the run, so alternating train/eval phases do not count as gaps). The gap fraction
of a label is its gaps over the wall time of its runs (first start to last end of each run).

The verdict's ``evidence`` holds the numbers the rules used; combine a verdict with the label's
energy (``power_w x duration_s``, or the caller's own energy attribution) to say what the
bottleneck cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..schema import DEVICE, T, device_kind
from .neuron_evidence import annotate as annotate_neuron
from .neuron_evidence import neuron_columns

VerdictName = Literal["idle", "compute-bound", "memory-bound", "host-bound"]
Basis = Literal["gpm", "nvml"]

#: A sample holds its value at most max(HOLD_FACTOR median periods, MIN_HOLD_S) to either side.
HOLD_FACTOR = 2.5
MIN_HOLD_S = 1.0
#: Spacing assumed for a column with a single sample (seconds).
DEFAULT_PERIOD_S = 0.5

#: Coverage reported in the evidence: share of the window with NVML utilisation / GPM samples.
_COVERAGE_NAMES = {"util_pct:coverage": "nvml_coverage", "sm_active_pct:coverage": "gpm_coverage"}

POWER_CAP_BITS = 0x4 | 0x80  # SW power cap, HW power brake (REFERENCE.md)
THERMAL_BITS = 0x20 | 0x40  # SW thermal, HW thermal slowdown (REFERENCE.md)

GPM_COLUMNS = ("sm_active_pct", "sm_occupancy_pct", "tensor_active_pct", "dram_active_pct")
NVML_COLUMNS = ("util_pct", "mem_util_pct", "sm_clock_mhz", "power_limit_w")


@dataclass(frozen=True)
class Thresholds:
    """The rules' thresholds (see the module docstring for their meaning)."""

    idle_util_pct: float = 5.0
    idle_busy_time_frac: float = 0.25
    idle_sm_active_pct: float = 5.0
    idle_power_ratio: float = 1.5
    idle_floor_max_frac: float = 0.30
    #: at the idle power floor a few % of utilisation is still idle (driver housekeeping, a poll)
    idle_floor_ratio: float = 1.15
    idle_floor_util_pct: float = 15.0
    #: ... unless kernels run in most utilisation periods (batch-1 decoding: tiny kernels all the time)
    idle_floor_busy_frac: float = 0.5
    host_util_pct: float = 50.0
    host_gap_frac: float = 0.5
    launch_sm_per_util: float = 0.25
    mem_util_per_util: float = 0.85
    dram_busy_pct: float = 70.0
    power_cap_frac: float = 0.5
    power_limit_frac: float = 0.95
    thermal_frac: float = 0.1
    min_coverage: float = 0.5


DEFAULT_THRESHOLDS = Thresholds()


@dataclass
class Verdict:
    verdict: VerdictName
    modifiers: list[str] = field(default_factory=list)
    #: The numbers the rules used (time-weighted means, fractions); missing inputs are absent.
    evidence: dict[str, float] = field(default_factory=dict)
    suggestion: str = ""
    #: "gpm" when GPM activity metrics covered the window, else "nvml".
    basis: Basis = "nvml"
    #: One line: which rule fired, with its numbers.
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = {k: float(v) for k, v in self.evidence.items()}
        return d


# --- time-weighted integration -----------------------------------------------------------------


def _step_integral(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breakpoints ``x`` and cumulative integrals of ``v`` and of coverage at them.

    ``t`` sorted, ``v`` finite. Between breakpoints both integrals are linear, so
    ``np.interp(b, x, F) - np.interp(a, x, F)`` is the exact integral over ``[a, b]``."""
    dt = np.diff(t)
    pos = dt[dt > 0]
    period = float(np.median(pos)) if pos.size else DEFAULT_PERIOD_S
    half = np.minimum(dt / 2.0, max(HOLD_FACTOR * period, MIN_HOLD_S))
    # The first and last samples reach as far out as they reach in.
    first = half[:1] if half.size else np.array([period / 2.0])
    last = half[-1:] if half.size else np.array([period / 2.0])
    lo = t - np.concatenate([first, half])
    hi = t + np.concatenate([half, last])
    w = hi - lo
    cum_v = np.cumsum(v * w)
    cum_c = np.cumsum(w)
    x = np.column_stack([lo, hi]).ravel()
    fv = np.column_stack([cum_v - v * w, cum_v]).ravel()
    fc = np.column_stack([cum_c - w, cum_c]).ravel()
    return x, fv, fc


def _window_integrals(
    t: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Integral of the held values and covered seconds over each window ``[a_i, b_i]``."""
    ok = np.isfinite(v) & np.isfinite(t)
    if not ok.any():
        z = np.zeros(len(a))
        return z, z.copy()
    x, fv, fc = _step_integral(t[ok], v[ok])
    iv = np.interp(b, x, fv) - np.interp(a, x, fv)
    ic = np.interp(b, x, fc) - np.interp(a, x, fc)
    return iv, ic


def _derived_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns to average for one device, indicators included (NaN where the source is NaN)."""
    cols: dict[str, np.ndarray] = {}
    for c in (*NVML_COLUMNS, *GPM_COLUMNS):
        if c in df.columns:
            cols[c] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64")
    power_col = next((c for c in ("power_w", "power_avg_w") if c in df.columns
                      and df[c].notna().any()), None)
    if power_col is not None:
        cols["power_w"] = pd.to_numeric(df[power_col], errors="coerce").to_numpy(dtype="float64")
    if "util_pct" in cols:
        u = cols["util_pct"]
        cols["busy_time_frac"] = np.where(np.isnan(u), np.nan, (u > 0).astype("float64"))
    if "throttle_reasons" in df.columns:
        r = pd.to_numeric(df["throttle_reasons"], errors="coerce").to_numpy(dtype="float64")
        bits = np.nan_to_num(r, nan=0.0).astype("int64")
        nan = np.isnan(r)
        cols["power_cap_frac"] = np.where(nan, np.nan, ((bits & POWER_CAP_BITS) != 0).astype("float64"))
        cols["thermal_frac"] = np.where(nan, np.nan, ((bits & THERMAL_BITS) != 0).astype("float64"))
    cols.update(neuron_columns(df))  # Neuron devices: core imbalance, runtime host overhead, errors
    return cols


def _device_means(
    df: pd.DataFrame, a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_groups: int, min_coverage: float
) -> dict[str, np.ndarray]:
    """Per group (label), the time-weighted mean of each column over its windows; NaN where the
    column covers less than ``min_coverage`` of the group's time. Adds ``<col>:coverage``."""
    df = df.sort_values(T, kind="stable")
    t = df[T].to_numpy(dtype="float64")
    span = np.bincount(codes, weights=b - a, minlength=n_groups)
    out: dict[str, np.ndarray] = {}
    for name, v in _derived_columns(df).items():
        iv, ic = _window_integrals(t, v, a, b)
        sv = np.bincount(codes, weights=iv, minlength=n_groups)
        sc = np.bincount(codes, weights=ic, minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = np.where(span > 0, sc / span, 0.0)
            mean = np.where((cov >= min_coverage) & (sc > 0), sv / sc, np.nan)
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
    s = steps[["t_start", "t_end", "label"]].sort_values(["t_start", "t_end"], kind="stable")
    lab = s["label"].astype(str).to_numpy()
    run = np.concatenate([[0], np.cumsum(lab[1:] != lab[:-1])]) if len(lab) else np.zeros(0, int)
    g = s.assign(label=lab, run=run).groupby("run", sort=True)
    return pd.DataFrame({"label": g["label"].first(), "t_start": g["t_start"].min(),
                         "t_end": g["t_end"].max()}).reset_index(drop=True)


# --- classification ---------------------------------------------------------------------------


def _gpu_devices(samples: pd.DataFrame, devices: Sequence[str] | None) -> list[str]:
    present = [str(d) for d in pd.unique(samples[DEVICE])]
    if devices is not None:
        return [d for d in present if d in set(devices)]
    gpus = [d for d in present if device_kind(d) == "gpu"]
    return gpus or present


def _idle_floor(df: pd.DataFrame, limit: float, th: Thresholds) -> float:
    col = next((c for c in ("power_w", "power_avg_w") if c in df.columns and df[c].notna().any()), None)
    if col is None:
        return float("nan")
    floor = float(np.nanpercentile(df[col].to_numpy(dtype="float64"), 2))
    if np.isfinite(limit) and limit > 0:
        floor = min(floor, th.idle_floor_max_frac * limit)
    return floor


def _evidence(
    samples: pd.DataFrame,
    a: np.ndarray,
    b: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    power_limits: dict[str, float] | None,
    idle_power_w: dict[str, float] | None,
    devices: Sequence[str] | None,
    th: Thresholds,
) -> list[dict[str, float]]:
    """Per group, the evidence dict averaged over devices (NaN entries dropped)."""
    per_device: list[dict[str, np.ndarray]] = []
    for dev in _gpu_devices(samples, devices):
        df = samples[samples[DEVICE] == dev]
        m = _device_means(df, a, b, codes, n_groups, th.min_coverage)
        limit = float((power_limits or {}).get(dev, np.nan))
        lim = m.get("power_limit_w")
        lim_arr = np.where(np.isfinite(lim), lim, limit) if lim is not None else np.full(n_groups, limit)
        m["power_limit_w"] = lim_arr
        if "power_w" in m:
            with np.errstate(invalid="ignore", divide="ignore"):
                m["power_frac"] = np.where(lim_arr > 0, m["power_w"] / lim_arr, np.nan)
            given = (idle_power_w or {}).get(dev)
            if given is not None:
                floor = float(given)
            else:
                known = lim_arr[np.isfinite(lim_arr)]
                floor = _idle_floor(df, float(known.max()) if known.size else limit, th)
            m["idle_power_w"] = np.full(n_groups, floor)
        per_device.append(m)
    span = np.bincount(codes, weights=b - a, minlength=n_groups)
    out: list[dict[str, float]] = []
    for g in range(n_groups):
        ev: dict[str, float] = {"duration_s": float(span[g]), "n_devices": float(len(per_device))}
        keys = sorted({k for m in per_device for k in m})
        for k in keys:
            vals = np.array([m[k][g] for m in per_device if k in m], dtype="float64")
            vals = vals[np.isfinite(vals)]
            if vals.size and (k in _COVERAGE_NAMES or not k.endswith(":coverage")):
                ev[_COVERAGE_NAMES.get(k, k)] = float(vals.mean())
        out.append(ev)
    return out


def _classify(ev: dict[str, float], gap: float | None, th: Thresholds) -> Verdict | None:
    util = ev.get("util_pct")
    busy = ev.get("busy_time_frac")
    sm = ev.get("sm_active_pct")
    tensor = ev.get("tensor_active_pct")
    dram = ev.get("dram_active_pct")
    mem = ev.get("mem_util_pct")
    power = ev.get("power_w")
    floor = ev.get("idle_power_w")
    basis: Basis = "gpm" if sm is not None else "nvml"
    if gap is not None:
        ev["gap_frac"] = gap
    # kernel-resident share of time: NVML util; GPM SM activity if NVML is missing.
    active = util if util is not None else sm
    if active is None:
        return None
    if util is not None and sm is not None and util > 0:
        ev["sm_active_per_util"] = sm / util
    if util is not None and mem is not None and util > 0:
        ev["mem_util_per_util"] = mem / util
    if dram is not None and util is not None and util > 0:
        ev["dram_busy_pct"] = min(100.0, dram / (util / 100.0))

    # modifiers
    modifiers: list[str] = []
    cap = ev.get("power_cap_frac")
    pfrac = ev.get("power_frac")
    if (cap is not None and cap >= th.power_cap_frac) or (pfrac is not None and pfrac >= th.power_limit_frac):
        modifiers.append("power-capped")
    thermal = ev.get("thermal_frac")
    if thermal is not None and thermal >= th.thermal_frac:
        modifiers.append("thermal-throttled")

    dur = ev["duration_s"]
    pw = f"{power:.0f} W" if power is not None else "unknown power"

    # idle: no activity, or (util alone is not the verdict) a few % of utilisation at the idle power floor
    at_floor = power is not None and floor is not None and bool(np.isfinite(floor)) and floor > 0
    idle = active < th.idle_util_pct
    if idle and busy is not None:
        idle = busy < th.idle_busy_time_frac
    if idle and sm is not None:
        idle = sm < th.idle_sm_active_pct
    if idle and at_floor:
        idle = power <= th.idle_power_ratio * floor
    floor_idle = (not idle and at_floor and power <= th.idle_floor_ratio * floor
                  and active < th.idle_floor_util_pct and (sm is None or sm < th.idle_sm_active_pct)
                  and (busy is None or busy < th.idle_floor_busy_frac))
    if idle or floor_idle:
        mods = [m for m in modifiers if m != "power-capped"]
        if floor_idle:
            why = (f"power {_fmt(power, th.idle_floor_ratio * floor)} W <= {th.idle_floor_ratio:g} x idle floor "
                   f"{floor:.0f} W with util {_fmt(active, th.idle_floor_util_pct, th.idle_util_pct)} % < "
                   f"{th.idle_floor_util_pct:g} %")
        else:
            why = (f"util {_fmt(active, th.idle_util_pct)} % < {th.idle_util_pct:g} %"
                   + (f", kernels in {busy:.0%} of periods" if busy is not None else "")
                   + (f", power {power:.0f} W near idle floor {floor:.0f} W" if power is not None and floor else ""))
        return _with_thermal(Verdict(
            "idle", mods, ev,
            f"The GPU did no work for {_span(dur)} yet drew {pw}: release it (end the job or free the "
            "allocation) or give it other work; if the idle time is a wait, shorten it.",
            basis, why,
        ), thermal)

    # host-bound
    launch = (util is not None and sm is not None and util >= th.idle_util_pct
              and sm < th.launch_sm_per_util * util)
    gap_host = gap is not None and gap >= th.host_gap_frac
    low_util = active < th.host_util_pct
    if launch or gap_host or low_util:
        if launch:
            assert util is not None and sm is not None
            sugg = (f"Kernels are resident {util:.0f} % of the time but the SMs are active only {sm:.1f} %: "
                    "kernels too small for the GPU (launch-bound). Capture the step in CUDA graphs "
                    "(torch.compile mode='reduce-overhead'), fuse small ops, or raise the batch size.")
            reason = (f"sm_active {_fmt(sm, th.launch_sm_per_util * util)} % < {th.launch_sm_per_util:g} x util "
                      f"{util:.0f} % (launch-bound)")
        elif gap_host:
            assert gap is not None
            sugg = (f"{gap:.0%} of the wall time is spent between steps: prepare the next batch while the GPU "
                    "works (DataLoader num_workers > 0, pin_memory=True, prefetch_factor, non_blocking "
                    "copies) and move host work out of the critical path.")
            reason = f"inter-step gaps {_fmt(100 * gap, 100 * th.host_gap_frac)} % >= {th.host_gap_frac:.0%}"
        else:
            sugg = (f"The GPU has no kernel to run {100 - active:.0f} % of the time: host-side work inside "
                    "the step (Python per-step/per-token overhead, kernel launches, synchronisations such as "
                    ".item()) limits throughput. Give each launch more work (larger or continuous batching), "
                    "use CUDA graphs / torch.compile, and profile the host (torch.profiler, py-spy).")
            reason = f"util {_fmt(active, th.host_util_pct, th.idle_util_pct)} % < {th.host_util_pct:g} %"
        return _with_thermal(Verdict("host-bound", modifiers, ev, sugg, basis, reason), thermal)

    # memory-bound
    mem_bound = False
    if dram is not None:
        dram_busy = ev.get("dram_busy_pct", dram)
        mem_bound = dram_busy >= th.dram_busy_pct and dram >= (tensor or 0.0)
        reason = (f"DRAM at {dram_busy:.0f} % of peak while busy (>= {th.dram_busy_pct:g} %), "
                  f"tensor {tensor or 0.0:.0f} %")
    elif mem is not None and util:
        mem_bound = mem / util >= th.mem_util_per_util
        reason = f"memory busy {mem / util:.2f} of kernel time (>= {th.mem_util_per_util:g})"
    if mem_bound:
        sugg = ("Memory bandwidth is the limit: fuse element-wise ops so data stays on chip (torch.compile), "
                "keep tensors in lower precision (bf16/fp8), raise arithmetic intensity (larger batch or "
                "tiles) and remove redundant copies.")
        if "power-capped" in modifiers:
            sugg += " The power cap is not what limits it."
        return _with_thermal(Verdict("memory-bound", modifiers, ev, sugg, basis, reason), thermal)

    # compute-bound
    reason = f"util {_fmt(active, th.host_util_pct)} % >= {th.host_util_pct:g} %, not memory-bound"
    if "power-capped" in modifiers:
        limit = ev.get("power_limit_w")
        lim = f" (e.g. nvidia-smi -pl {0.8 * limit:.0f}, 80 % of {limit:.0f} W)" if limit else ""
        sugg = ("Compute-bound at the power limit: the clock is already held back by power, so lowering the "
                f"power limit{lim} costs little speed and saves energy; compare J/token at a few limits.")
    elif tensor is not None and tensor < 30.0:
        sugg = (f"Compute-bound but the tensor cores are active only {tensor:.0f} %: move the math to tensor "
                "cores (bf16/tf32/fp8 matmuls, fused attention kernels) to do the same work in less time.")
    else:
        sugg = ("Compute-bound: speed and energy now come from doing less work per token (bf16/fp8, fused "
                "attention, avoiding recomputation); a lower power limit may also save energy at small cost.")
    return _with_thermal(Verdict("compute-bound", modifiers, ev, sugg, basis, reason), thermal)


def _fmt(value: float, *thresholds: float) -> str:
    """``value`` with as few decimals as keep it apart from every threshold it is compared with:
    5.18 against 5 prints "5.18", not "5" (a reason must not round a threshold away)."""
    for d in range(0, 4):
        s = f"{value:.{d}f}"
        if all(float(s) != round(t, d) or value == t for t in thresholds):
            return s
    return f"{value:.4g}"


def _with_thermal(v: Verdict, thermal: float | None) -> Verdict:
    if "thermal-throttled" in v.modifiers and thermal is not None:
        v.suggestion += (f" Clocks were thermally throttled {thermal:.0%} of the time: check cooling, airflow "
                         "and fan settings.")
    return v


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
    labels = windows["label"].astype(str)
    codes, uniques = pd.factorize(labels, sort=False)
    a = windows["t_start"].to_numpy(dtype="float64")
    b = windows["t_end"].to_numpy(dtype="float64")
    b = np.maximum(a, b)
    evs = _evidence(samples, a, b, codes, len(uniques), power_limits, idle_power_w, devices, thresholds)
    gaps = gap_fractions(steps) if steps is not None else {}
    out: dict[str, Verdict] = {}
    for g, label in enumerate(uniques):
        v = _classify(evs[g], gaps.get(str(label)), thresholds)
        if v is not None:
            annotate_neuron(v)
            out[str(label)] = v
    return out


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
    if not hi > lo:
        return []
    edges = np.arange(lo, hi, window_s)
    a = edges
    b = np.minimum(edges + window_s, hi)
    codes = np.arange(len(a))
    evs = _evidence(samples, a, b, codes, len(a), power_limits, idle_power_w, devices, thresholds)
    out: list[tuple[float, float, Verdict]] = []
    for i in range(len(a)):
        v = _classify(evs[i], None, thresholds)
        if v is not None:
            annotate_neuron(v)
            out.append((float(a[i]), float(b[i]), v))
    return out


def _span(seconds: float) -> str:
    """``0.4`` -> ``400 ms``, ``12.3`` -> ``12 s``, ``300`` -> ``5 min`` (never "for 0 s")."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"

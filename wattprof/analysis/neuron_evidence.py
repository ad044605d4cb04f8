"""Neuron evidence for the bottleneck verdicts: per-core imbalance, host overhead, runtime errors.

Pure functions, no I/O; used by :mod:`wattprof.analysis.bottleneck` through two hooks:
:func:`neuron_columns` adds per-sample columns that the bottleneck code averages over each
window like its own (time-weighted, per device, then the mean over devices), and
:func:`annotate` adds what they show to a verdict's reason and suggestion.

Columns (from :mod:`wattprof.formats.neuron_monitor`; absent on other devices, so nothing changes
for GPUs):

- ``core_imbalance_pct`` = ``core_util_max_pct - core_util_min_pct``: percentage points between
  the busiest and the least busy NeuronCore of a device. The device average (``util_pct``) hides
  a core that waits for the others.
- ``host_overhead_frac`` = ``1 - device_latency_p50_s / latency_p50_s``: the share of a median
  execution's latency, as the Neuron runtime measures it, spent outside the device (input
  preparation, transfers, queueing). Clipped to [0, 1].
- ``runtime_err_per_s``: errors the runtime reported (``error_summary``, every kind) per second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: A spread of 25 points between cores of one device means one core idles a quarter of the time
#: the busiest one works: big enough to be worth rebalancing.
IMBALANCE_PCT = 25.0
#: Half of the median execution's latency outside the device: the host sets the pace.
HOST_OVERHEAD_FRAC = 0.5


def _col(df: pd.DataFrame, name: str) -> np.ndarray | None:
    if name not in df.columns:
        return None
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype="float64")


def neuron_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Derived columns of one device's samples (NaN where an input is NaN); {} without Neuron columns."""
    out: dict[str, np.ndarray] = {}
    lo, hi = _col(df, "core_util_min_pct"), _col(df, "core_util_max_pct")
    if lo is not None and hi is not None:
        out["core_imbalance_pct"] = np.clip(hi - lo, 0.0, 100.0)
    total, device = _col(df, "latency_p50_s"), _col(df, "device_latency_p50_s")
    if total is not None and device is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(total > 0, 1.0 - device / total, np.nan)
        out["host_overhead_frac"] = np.clip(frac, 0.0, 1.0)
    err = _col(df, "runtime_err_per_s")
    if err is not None:
        out["runtime_err_per_s"] = err
    return out


def annotate(verdict) -> None:  # noqa: ANN001 - a bottleneck.Verdict (no import: bottleneck imports us)
    """Add the Neuron evidence of ``verdict.evidence`` to its reason and suggestion (in place)."""
    ev = verdict.evidence
    if verdict.verdict == "idle":
        return
    notes: list[str] = []
    reasons: list[str] = []
    overhead = ev.get("host_overhead_frac")
    if overhead is not None and overhead >= HOST_OVERHEAD_FRAC:
        reasons.append(f"runtime host overhead {overhead:.0%} of latency")
        notes.append(f"The Neuron runtime spends {overhead:.0%} of a median execution's latency outside the device "
                     "(total - device latency): prepare inputs ahead of time, keep tensors on the device between "
                     "executions and batch more work per call.")
    spread = ev.get("core_imbalance_pct")
    if spread is not None and spread >= IMBALANCE_PCT:
        reasons.append(f"NeuronCore spread {spread:.0f} points")
        notes.append(f"NeuronCores of a device differ by {spread:.0f} utilisation points on average: spread the work "
                     "evenly (data-parallel degree, NEURON_RT_VISIBLE_CORES, batch split) so no core waits.")
    errors = ev.get("runtime_err_per_s")
    if errors is not None and errors > 0:
        reasons.append(f"{errors:.2g} runtime errors/s")
        notes.append(f"The Neuron runtime reported {errors:.2g} errors/s (error_summary): failed executions cost "
                     "energy for nothing; see the run's events.")
    if reasons:
        verdict.reason = f"{verdict.reason}; {', '.join(reasons)}" if verdict.reason else ", ".join(reasons)
        verdict.suggestion = " ".join([verdict.suggestion, *notes]).strip()

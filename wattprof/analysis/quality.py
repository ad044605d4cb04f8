"""Quality flags: what limits how far a figure can be trusted. Pure functions of samples/steps.

- windows shorter than the sensor can resolve (the NVML counter advances every ~100 ms: a window
  under ~1 s is uncertain by about 2 x power x 100 ms, REFERENCE.md);
- energy from averaged power (deconvolved: within ~2 % on busy phases of >= 4 s on the H100
  traces) or from an estimate;
- gaps in samples (longer than ``GAP_FACTOR`` median sampling intervals and ``GAP_MIN_S``:
  :func:`.periods.gap_limit`);
- clock skew suspected: steps outside, or partly outside, the samples' time range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema
from .periods import gap_limit

COUNTER_RESOLUTION_S = 1.0


def sample_gaps(t: np.ndarray) -> tuple[int, float, float]:
    """(number of gaps, largest gap s, time of the largest) in sorted sample times."""
    if len(t) < 3:
        return 0, 0.0, float("nan")
    d = np.diff(t)
    limit = gap_limit(d)
    big = d > limit
    if not big.any():
        return 0, 0.0, float("nan")
    i = int(np.argmax(d))
    return int(big.sum()), float(d[i]), float(t[i])


def source_flag(source: str) -> str | None:
    if source == "averaged_power":
        return ("energy from the 1 s averaged power reading (deconvolved; no energy counter): about 2 % on busy "
                "phases of 4 s or more, more on a short phase right after a power change")
    if source == "instant_power":
        return ("energy from instant power readings (no counter): a reading averages only part of each refresh "
                "period, so phases of short steps with host gaps can alias (up to 6 % on the H100 traces)")
    if source == "estimate":
        return "ESTIMATED energy (a model, not a measurement)"
    return None


def short_window_flag(durations_s: np.ndarray, what: str, source: str) -> str | None:
    if source != "counter" or len(durations_s) == 0:
        return None
    med = float(np.median(durations_s))
    if med < COUNTER_RESOLUTION_S:
        return (f"{what} last {med * 1e3:.0f} ms (median), under the counter's ~1 s resolution: a single "
                f"{what[:-1]}'s energy is uncertain by about 2 x power x 100 ms; totals over many are not")
    return None


def clock_skew_flags(steps: pd.DataFrame, t_first: float, t_last: float) -> list[str]:
    if steps.empty or not np.isfinite(t_first):
        return []
    s0 = steps["t_start"].to_numpy(float)
    s1 = steps["t_end"].to_numpy(float)
    out = []
    outside = int(((s1 < t_first) | (s0 > t_last)).sum())
    partly = int((((s0 < t_first) & (s1 >= t_first)) | ((s1 > t_last) & (s0 <= t_last))).sum())
    if outside:
        out.append(f"clock skew suspected: {outside} of {len(steps)} step(s) lie outside the samples' time range "
                   f"({t_first:.1f}-{t_last:.1f}): they get no energy")
    if partly:
        out.append(f"clock skew suspected: {partly} step(s) lie partly outside the samples' time range")
    return out


def gap_flag(device: str, t: np.ndarray) -> str | None:
    n, largest, at = sample_gaps(t)
    if not n:
        return None
    return (f"{n} gap(s) in {device}'s samples (largest {largest:.1f} s at {at:.1f}): power readings are not "
            "integrated across a gap (no energy counted there); an energy counter's difference is kept")


def device_times(samples: pd.DataFrame, device: str) -> np.ndarray:
    return np.sort(samples.loc[samples[schema.DEVICE] == device, schema.T].to_numpy(float))

"""Align steps recorded on a foreign clock with the samples by matching activity.

Some step sources (``vllm bench serve`` results: ``time.perf_counter`` of the client) carry no
usable wall-clock time; a coarse anchor (e.g. the result's ``date``, 1 s resolution) gives an
offset good to about a second. :func:`refine_offset` sharpens it: it models what the GPU's
activity metric should read if the steps were shifted by ``o``, and picks the ``o`` whose model
best explains the samples.

Model. From the steps, on a grid of ``step_s``: ``any(t)`` (1 while a step is active) and
``inflight(t)`` (number of active steps). The metric is a delayed, smoothed view of activity:
NVML ``utilization.gpu`` is the percent of time a kernel ran over its past sample period ``P``
and is refreshed every ``P`` (REFERENCE.md; about 0.2 s on the H100 fixture); a poll at time
``t`` returns the value of the last refresh, so the reading at ``t`` covers activity through a
causal kernel: a box of width ``P`` (the averaging window) convolved with a box of width ``P``
(time since the refresh). ``P`` is measured from the samples (how often the value changes).
NVML instant power averages 25 ms and refreshes every 100 ms (REFERENCE.md): box(25 ms) * box(P).
For each candidate ``o`` the metric is regressed on both filtered signals (plus a constant);
the score is the multiple correlation ``R(o)``. All candidates at once: sums over samples of the
shifted model are cross-correlations, computed with FFTs (no loop over samples or offsets).

Uncertainty. ``R^2`` gives a profile log-likelihood ``-(N_eff/2) log(1 - R^2(o))`` with
``N_eff`` the number of samples divided by the integrated autocorrelation time of the residuals
(readings held for ``P`` and slow model mismatch are not independent evidence). The reported
uncertainty is the largest distance from the best offset to any scanned offset whose
log-likelihood is within 2 of the best (about a 2-sigma interval, including separate secondary
peaks), never below the grid step, the sample interval or ``P/2`` (the model's lag is known to
about half a refresh period).

Fallback. With no usable metric, no steps overlapping the samples, a fit that is not clearly
significant, a best offset on the edge of the search range, a likely region reaching the edge of
``coarse +/- search_s`` (``bounds``, by contrast, are taken as hard limits that may cut the
region), or a result no sharper than ``coarse_uncertainty_s``, the coarse offset is returned
with ``method="date"`` and the reason in ``note``: never a silent guess.

What the refined offset means: the shift that lines the steps up with GPU activity. A constant
delay between the step source's timestamps and the GPU work (HTTP, scheduling) is absorbed into
it, which is what energy attribution wants.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...schema import DEVICE, T, is_accelerator
from .fft import fast_len

#: Metric columns used when ``metric`` is not given: every one that varies adds its evidence (its
#: log-likelihood curve), so a weak power contrast is backed by utilisation, SM clock and memory activity.
METRICS: tuple[str, ...] = ("util_pct", "power_w", "sm_active_pct", "sm_clock_mhz", "mem_util_pct", "dram_active_pct")
#: NVML instant power averages the last 25 ms (REFERENCE.md, Yang et al. SC'24).
NVML_INSTANT_WINDOW_S = 0.025
#: Log-likelihood drop that bounds the reported region (about 2 sigma for one parameter).
DELTA_LOGLIK = 2.0
#: Minimum log-likelihood gain of the best fit over "no relation" (likelihood-ratio statistic
#: 2 x 12 = 24: p about 1e-6 per offset, about 1e-3 after scanning ~1000 offsets).
MIN_LOGLIK_GAIN = 12.0
#: Minimum number of effectively independent samples.
MIN_N_EFF = 10.0


@dataclass(frozen=True)
class OffsetEstimate:
    """``wall = source time + offset_s``; true offset within ``+/- uncertainty_s`` (about 2 sigma).

    ``method``: ``"xcorr:<metric>"`` when refined from the samples, ``"date"`` when the coarse
    offset was kept (``note`` says why). ``score``: multiple correlation at ``offset_s``
    (0..1; NaN when nothing could be computed)."""

    offset_s: float
    uncertainty_s: float
    method: str
    score: float
    note: str = ""
    #: the metric columns whose evidence was combined
    signals: tuple[str, ...] = ()


def refine_offset(
    steps: pd.DataFrame,
    samples: pd.DataFrame,
    coarse: float,
    *,
    search_s: float = 2.0,
    step_s: float = 0.01,
    bounds: tuple[float, float] | None = None,
    coarse_uncertainty_s: float = 1.0,
    device: str | None = None,
    metric: str | None = None,
) -> OffsetEstimate:
    """Best offset (s) to add to ``steps`` times so that they line up with ``samples``.

    ``steps``: ``t_start``/``t_end`` on the source clock (e.g. ``VllmBench.steps(offset=0.0)``).
    ``samples``: wattprof samples (``t`` wall clock, ``device``, metric columns). Scans offsets
    ``coarse +/- search_s`` every ``step_s``, or ``bounds`` = (lo, hi) when given: hard limits
    known to hold the true offset (``VllmBench.offset_bounds``). Uses
    ``metric`` or else the first of ``util_pct``, ``power_w`` that varies, on ``device`` or else
    all accelerator devices (each centred on its own mean). Pure: no I/O."""
    lo, hi = _search_window(coarse, search_s, step_s, bounds)

    def keep_coarse(note: str, score: float = float("nan")) -> OffsetEstimate:
        return OffsetEstimate(float(coarse), float(coarse_uncertainty_s), "date", score, note)

    s, e = _step_spans(steps)
    if s.size == 0:
        return keep_coarse("no steps with a positive duration")

    # --- samples: every varying metric, per-device series ---------------------------------
    selected = _select_all(samples, device, metric)
    if not selected:
        return keep_coarse(f"no varying {metric or ' / '.join(METRICS)} in the samples")
    h = float(step_s)
    n_lag = int(math.floor((hi - lo) / h + 1e-9)) + 1
    offsets = lo + h * np.arange(n_lag)
    fits = []
    for name, series in selected:
        fit = _metric_fit(s, e, series, name, lo, hi, h, n_lag)
        if isinstance(fit, str):
            if len(selected) == 1:
                return keep_coarse(fit)
            continue
        fits.append(fit)
    if not fits:
        return keep_coarse("no metric gives activity that the steps can explain")
    return _judge(fits, offsets, lo, hi, h, bounds is not None, coarse_uncertainty_s, keep_coarse)


def _search_window(coarse: float, search_s: float, step_s: float,
                   bounds: tuple[float, float] | None) -> tuple[float, float]:
    """The offsets to scan, ``[lo, hi]``: ``bounds`` when given, else ``coarse +/- search_s``."""
    if not (step_s > 0 and math.isfinite(step_s)):
        raise ValueError(f"step_s must be a positive number, got {step_s!r}")
    if not math.isfinite(coarse):
        raise ValueError(f"coarse must be finite, got {coarse!r}")
    if bounds is None:
        if not (search_s > 0 and math.isfinite(search_s)):
            raise ValueError(f"search_s must be a positive number, got {search_s!r}")
        return coarse - search_s, coarse + search_s
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"bounds must be finite with lo < hi, got {bounds!r}")
    return lo, hi


def _step_spans(steps: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of the steps with a positive duration (source clock)."""
    for c in ("t_start", "t_end"):
        if c not in steps.columns:
            raise ValueError(f"steps lack column {c!r}")
    s = steps["t_start"].to_numpy(dtype=float)
    e = steps["t_end"].to_numpy(dtype=float)
    ok = np.isfinite(s) & np.isfinite(e) & (e > s)
    return s[ok], e[ok]


def _judge(fits: list[dict], offsets: np.ndarray, lo: float, hi: float, h: float, bounded: bool,
           coarse_uncertainty_s: float, keep_coarse: Callable[..., OffsetEstimate]) -> OffsetEstimate:
    """The combined evidence of every metric's fit: the best offset and its uncertainty, or the
    coarse offset with the reason it was kept (see the module doc, "Fallback")."""
    n_lag = len(offsets)
    loglik = np.sum([f["loglik"] for f in fits], axis=0)
    n_eff = float(sum(f["n_eff"] for f in fits))
    best = int(np.argmax(loglik))
    gain = float(loglik[best])
    r2b = [float(f["r2"][best]) for f in fits]
    score = float(math.sqrt(max(r2b)))
    names = "+".join(f["name"] for f in fits)
    if gain <= 0:
        return keep_coarse("steps and samples do not overlap at any searched offset", score)
    region = np.flatnonzero(loglik >= gain - DELTA_LOGLIK)
    floor = max(h, min(max(f["sample_dt"], f["period"] / 2.0) for f in fits))
    unc = max(float(np.max(np.abs(offsets[region] - offsets[best]))), floor)
    detail = ("; ".join(f"{f['name']}: refresh period {f['period']:.3f} s, N_eff {f['n_eff']:.0f}, "
                        f"log-likelihood {float(f['loglik'][best]):.1f}" for f in fits)
              + f"; combined gain {gain:.1f}, searched [{lo:.3f}, {hi:.3f}]")
    if n_eff < MIN_N_EFF:
        return keep_coarse(f"too few independent samples ({detail})", score)
    if gain < MIN_LOGLIK_GAIN:
        return keep_coarse(f"activity does not clearly match ({detail})", score)
    if best in (0, n_lag - 1):
        return keep_coarse(f"best offset is at the edge of the search range ({detail})", score)
    if not bounded and (region[0] == 0 or region[-1] == n_lag - 1):
        # coarse +/- search_s is an arbitrary window: the peak may continue beyond it.
        return keep_coarse(f"likely offsets reach the edge of the search range; widen it ({detail})", score)
    if unc >= coarse_uncertainty_s:
        return keep_coarse(f"refinement (+/-{unc:.2f} s) is no sharper than the coarse offset ({detail})", score)
    return OffsetEstimate(float(offsets[best]), unc, f"xcorr:{names}", score, detail,
                          tuple(f["name"] for f in fits))


def _metric_fit(s: np.ndarray, e: np.ndarray, series: list[tuple[np.ndarray, np.ndarray]], name: str, lo: float,
                hi: float, h: float, n_lag: int) -> dict | str:
    """One metric's fit at every scanned offset: ``r2``, ``loglik`` (profile log-likelihood gain over
    no relation), ``n_eff``, refresh ``period`` and ``sample_dt``; or why it cannot be fitted."""
    periods = [_refresh_period(t, y) for t, y in series]
    period = float(np.median(periods))
    sample_dt = float(max(np.median(np.diff(t)) for t, _ in series))
    window = NVML_INSTANT_WINDOW_S if name == "power_w" else period
    kernel = np.convolve(_box(period, h), _box(window, h))
    kernel /= kernel.sum()

    # --- grids --------------------------------------------------------------------------
    t_all = np.concatenate([t for t, _ in series])
    y_all = np.concatenate([y - y.mean() for _, y in series])
    tau0 = float(t_all.min()) - hi - (kernel.size + 1) * h
    q = np.rint((t_all - lo - tau0) / h).astype(np.int64)  # source index at offset j: q - j
    m_len = int(q.max()) + 1
    xs = _activity(s, e, tau0, h, m_len, kernel)
    if all(np.ptp(x) == 0 for x in xs):
        return "steps give no activity change inside the searched range"

    # --- all offsets at once: sums over samples of the shifted model via FFT --------------
    w_grid = np.bincount(q, minlength=m_len).astype(float)
    y_grid = np.bincount(q, weights=y_all, minlength=m_len)
    nfft = fast_len(m_len + n_lag)
    fw, fy = np.fft.rfft(w_grid, nfft), np.fft.rfft(y_grid, nfft)

    def corr(f_obs: np.ndarray, x: np.ndarray) -> np.ndarray:
        # sum_m x[m] * obs[m + j]  ==  sum over samples of x[q_n - j] (times y_n or 1)
        return np.fft.irfft(f_obs * np.conj(np.fft.rfft(x, nfft)), nfft)[:n_lag]

    k = len(xs)
    n_obs = float(y_all.size)
    sx = np.stack([corr(fw, x) for x in xs], axis=1)  # (n_lag, k)
    sxy = np.stack([corr(fy, x) for x in xs], axis=1)
    sxx = np.empty((n_lag, k, k))
    for a in range(k):
        for b in range(a, k):
            sxx[:, a, b] = sxx[:, b, a] = corr(fw, xs[a] * xs[b])
    sy, syy = float(y_all.sum()), float(y_all @ y_all)
    cxx = sxx - sx[:, :, None] * sx[:, None, :] / n_obs
    cxy = sxy - sx * sy / n_obs
    cyy = syy - sy * sy / n_obs
    if not cyy > 0:
        return f"{name} does not vary"
    # Offsets where the shifted model barely varies over the samples carry no information;
    # FFT round-off there must not be inverted into a spurious fit.
    scale = n_obs * max(float(np.mean(x * x)) for x in xs)
    informative = np.trace(cxx, axis1=1, axis2=2) > 1e-6 * scale
    r2 = np.zeros(n_lag)
    if informative.any():
        inv = np.linalg.pinv(cxx[informative], rcond=1e-9)
        r2[informative] = np.einsum("ji,jik,jk->j", cxy[informative], inv, cxy[informative]) / cyy
    r2 = np.clip(r2, 0.0, 1.0 - 1e-12)
    best = int(np.argmax(r2))
    if r2[best] <= 0:
        return "steps and samples do not overlap at any searched offset"

    n_eff = _effective_n(y_all, [x[q - best] for x in xs], [t.size for t, _ in series])
    loglik = -0.5 * n_eff * np.log1p(-r2)
    return {"name": name, "r2": r2, "loglik": loglik, "n_eff": n_eff, "period": period, "sample_dt": sample_dt}


def _activity(s: np.ndarray, e: np.ndarray, tau0: float, h: float, m_len: int,
              kernel: np.ndarray) -> list[np.ndarray]:
    """What the metric should show, on the source grid ``tau0 + m*h``: steps active (and how many
    are in flight, when they overlap), filtered by ``kernel``, each centred on its mean."""
    i0 = np.clip(np.ceil((s - tau0) / h).astype(np.int64), 0, m_len)
    i1 = np.clip(np.ceil((e - tau0) / h).astype(np.int64), 0, m_len)
    diff = np.zeros(m_len + 1)  # in-flight count by a difference array
    np.add.at(diff, i0, 1.0)
    np.add.at(diff, i1, -1.0)
    inflight = np.cumsum(diff)[:m_len]
    active = (inflight > 0.5).astype(float)
    regs = [active] if inflight.max() <= 1.5 else [active, inflight]
    xs = [np.convolve(r, kernel)[:m_len] for r in regs]
    return [x - x.mean() for x in xs]


def _effective_n(y: np.ndarray, regressors: list[np.ndarray], sizes: list[int]) -> float:
    """Effectively independent samples: each device's count over the integrated autocorrelation
    time of the residuals of ``y`` regressed on ``regressors`` (the model at the best offset)."""
    design = np.column_stack([np.ones_like(y), *regressors])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    n_eff, start = 0.0, 0
    for n in sizes:
        n_eff += n / _autocorr_time(resid[start:start + n])
        start += n
    return n_eff


def _select_all(samples: pd.DataFrame, device: str | None,
                metric: str | None) -> list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """Every metric of ``metric`` or :data:`METRICS` that varies, with its per-device series."""
    out = []
    for name in ([metric] if metric else list(METRICS)):
        series, got = _select_series(samples, device, name)
        if series and got == name:
            out.append((name, series))
    return out


def _select_series(samples: pd.DataFrame, device: str | None,
                   metric: str | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    if T not in samples.columns:
        raise ValueError(f"samples lack column {T!r}")
    df = samples
    if DEVICE in df.columns:
        if device is not None:
            df = df[df[DEVICE] == device]
        else:
            acc = df[DEVICE].astype(str).map(is_accelerator)
            if acc.any():
                df = df[acc]
    groups = list(df.groupby(DEVICE, sort=True)) if DEVICE in df.columns else [("", df)]
    for name in ([metric] if metric else list(METRICS)):
        if name not in df.columns:
            continue
        out = []
        for _, g in groups:
            t = g[T].to_numpy(dtype=float)
            y = pd.to_numeric(g[name], errors="coerce").to_numpy(dtype=float)
            good = np.isfinite(t) & np.isfinite(y)
            t, y = t[good], y[good]
            order = np.argsort(t, kind="stable")
            t, y = t[order], y[order]
            if t.size >= 10 and np.ptp(y) > 0 and np.ptp(t) > 0:
                out.append((t, y))
        if out:
            return out, name
    return [], ""


def _refresh_period(t: np.ndarray, y: np.ndarray) -> float:
    """How often the reading is refreshed: lower quartile of the intervals between value
    changes (runs of equal values longer than a refresh are common: idle), at least the
    median sample interval."""
    dt = float(np.median(np.diff(t)))
    changes = t[1:][np.diff(y) != 0]
    if changes.size < 4:
        return dt
    return max(dt, float(np.quantile(np.diff(changes), 0.25)))


def _box(width: float, h: float) -> np.ndarray:
    return np.ones(max(1, int(round(width / h))))


def _autocorr_time(r: np.ndarray) -> float:
    """Integrated autocorrelation time in samples (1 + 2 * sum of the initial positive run)."""
    n = r.size
    if n < 3:
        return 1.0
    r = r - r.mean()
    f = np.fft.rfft(r, fast_len(2 * n))
    ac = np.fft.irfft(f * np.conj(f))[:n]
    if ac[0] <= 0:
        return 1.0
    rho = ac[1:] / ac[0]
    neg = np.flatnonzero(rho <= 0)
    stop = int(neg[0]) if neg.size else rho.size
    return float(max(1.0, 1.0 + 2.0 * rho[:stop].sum()))

"""Compare runs and gate nightly benchmarks on regressions. Pure functions of run summaries.

Conventions follow asv / pytest-benchmark (REFERENCE.md): a baseline (the last run, the median of
the last N, or a named run), the change in percent, a noise band from the baseline runs' own
spread, a verdict. A change is a regression only if it is worse than BOTH the threshold and the
noise: ``noise_pct = 2 x 1.4826 x MAD / median`` of the reference runs (about two standard
deviations for normal noise, robust to one outlier), so a noisy benchmark needs a larger change.
Lower is better for every metric here (energy, J/token, time, power).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import InputError
from ..reports.summary import METRICS, RunSummary

Verdict = Literal["regression", "improvement", "ok", "no-data", "insufficient-history"]
DEFAULT_NOISE_RUNS = 10
#: runs before the latest one needed for a verdict: fewer cannot tell a change from the noise
MIN_BASELINE_RUNS = 3


@dataclass
class Change:
    """One metric of one run against its baseline."""

    metric: str
    label: str | None
    baseline: float | None
    latest: float | None
    change_pct: float | None
    noise_pct: float | None
    threshold_pct: float
    verdict: Verdict


@dataclass
class BenchmarkResult:
    benchmark: str
    latest: RunSummary
    baseline_runs: list[RunSummary]
    baseline_kind: str
    change: Change
    #: every run of the benchmark, oldest first: (started_at, value, run path)
    series: list[tuple[float, float | None, str]] = field(default_factory=list)
    labels: list[Change] = field(default_factory=list)
    #: every run of the benchmark, oldest first (the points of ``series``: names, ids, tags)
    runs: list[RunSummary] = field(default_factory=list)


def parse_baseline(text: str) -> tuple[str, int | str | None]:
    """``last`` | ``median:N`` | a run path/id."""
    if text == "last":
        return "last", None
    if text == "median" or (text.startswith("median") and not text.startswith("median:")):
        raise InputError(f"--baseline {text!r}: say median:N, the median of the last N runs (e.g. median:7)")
    if text.startswith("median:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"--baseline {text!r}: expected median:N with N >= 1")
        return "median", n
    return "run", text


def noise_pct(values: Sequence[float | None]) -> float | None:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) < 3:
        return None
    med = float(np.median(v))
    if med == 0:
        return None
    mad = float(np.median(np.abs(v - med)))
    return 100.0 * 2 * 1.4826 * mad / abs(med)


def judge(baseline: float | None, latest: float | None, noise: float | None, threshold: float) -> tuple[
        float | None, Verdict]:
    if baseline is None or latest is None or baseline == 0:
        return None, "no-data"
    change = 100.0 * (latest / baseline - 1.0)
    bar = max(threshold, noise or 0.0)
    if change > bar:
        return change, "regression"
    if change < -bar:
        return change, "improvement"
    return change, "ok"


def _value(s: RunSummary, metric: str, label: str | None) -> float | None:
    return s.metric(metric, label)


def evaluate(runs: list[RunSummary], *, baseline: str = "last", threshold_pct: float = 5.0,
             metric: str = "j_per_token", label: str | None = None,
             named: RunSummary | None = None) -> BenchmarkResult | None:
    """The latest run of one benchmark (``runs`` sorted oldest first) against its baseline."""
    if metric not in METRICS:
        raise InputError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    if not runs:
        return None
    latest, previous = runs[-1], runs[:-1]
    kind, arg = parse_baseline(baseline)
    if kind == "run":
        if named is None:
            raise InputError(f"--baseline {baseline!r}: not a run of this history")
        base_runs = [named]
        base_value = _value(named, metric, label)
        reference = previous[-DEFAULT_NOISE_RUNS:]
    else:
        if not previous:
            return None
        n = 1 if kind == "last" else int(arg)  # type: ignore[arg-type]
        base_runs = previous[-n:]
        vals = [v for v in (_value(s, metric, label) for s in base_runs) if v is not None]
        base_value = float(np.median(vals)) if vals else None
        reference = previous[-max(n, DEFAULT_NOISE_RUNS):]
    noise = noise_pct([_value(s, metric, label) for s in reference])
    change, verdict = judge(base_value, _value(latest, metric, label), noise, threshold_pct)
    enough = len(previous) >= MIN_BASELINE_RUNS
    if not enough and verdict != "no-data":
        verdict = "insufficient-history"
    result = BenchmarkResult(
        benchmark=latest.benchmark, latest=latest, baseline_runs=base_runs, baseline_kind=baseline,
        change=Change(metric, label, base_value, _value(latest, metric, label), change, noise, threshold_pct, verdict),
        series=[(s.started_at or 0.0, _value(s, metric, label), s.path) for s in runs], runs=list(runs),
    )
    for lab in latest.by_label:
        if label is not None:
            break
        bvals = [v for v in (_value(s, metric, lab) for s in base_runs) if v is not None]
        b = float(np.median(bvals)) if bvals else None
        nz = noise_pct([_value(s, metric, lab) for s in reference])
        ch, vd = judge(b, _value(latest, metric, lab), nz, threshold_pct)
        if not enough and vd != "no-data":
            vd = "insufficient-history"
        result.labels.append(Change(metric, lab, b, _value(latest, metric, lab), ch, nz, threshold_pct, vd))
    return result


def group(history: list[RunSummary]) -> dict[str, list[RunSummary]]:
    out: dict[str, list[RunSummary]] = {}
    for s in history:
        out.setdefault(s.benchmark, []).append(s)
    for v in out.values():
        v.sort(key=lambda s: (s.started_at or 0.0, s.ended_at or 0.0, s.path))  # equal starts stay distinct
    return out


@dataclass
class Side:
    """One row of a side-by-side comparison."""

    what: str
    a: float | str | None
    b: float | str | None
    change_pct: float | None


def compare(a: RunSummary, b: RunSummary) -> dict[str, list[Side]]:
    """Totals and per-label figures of two runs with percent changes (B against A)."""

    def pct(x: float | None, y: float | None) -> float | None:
        if x is None or y is None or x == 0:
            return None
        return 100.0 * (y / x - 1.0)

    totals = [Side(m, a.metric(m), b.metric(m), pct(a.metric(m), b.metric(m)))
              for m in ("energy_j", "duration_s", "mean_power_w", "tokens", "j_per_token")]
    labels: dict[str, list[Side]] = {"totals": totals}
    for lab in sorted(set(a.by_label) | set(b.by_label)):
        rows = [Side(m, a.metric(m, lab), b.metric(m, lab), pct(a.metric(m, lab), b.metric(m, lab)))
                for m in ("energy_j", "duration_s", "j_per_token", "mean_power_w", "steps")]
        va, vb = a.by_label.get(lab, {}), b.by_label.get(lab, {})
        rows.append(Side("bottleneck", _verdict(va), _verdict(vb), None))
        labels[lab] = rows
    return labels


def _verdict(d: dict) -> str | None:
    if not d.get("verdict"):
        return None
    return " + ".join([d["verdict"], *d.get("modifiers", [])])

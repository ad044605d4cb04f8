"""CloudWatch datapoints as samples: a datapoint's timestamp is the start of its period and its
value the average of the readings in it, so each value is placed at the middle of its bucket;
power between those points is linear, and the run's edges get a value interpolated from the
neighbouring points (held for at most one reading interval). Pure functions over :class:`Series`."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from .sources import MetricMap


@dataclass
class Series:
    device: str
    metric: MetricMap
    dims: dict[str, str]
    column: str = ""
    times: list[float] = field(default_factory=list)  # bucket starts, Unix s
    values: list[float] = field(default_factory=list)
    interval_s: float | None = None  # how often the publisher writes (from the probe)
    high_resolution: bool = True
    period: int = 0


def tail_missing(series: list[Series], power_metric: str | None, t1: float) -> bool:
    """Whether the power series (else any) lack data up to the run's end ``t1``."""
    power = [s for s in series if s.metric.metric == power_metric] or series
    return any(not s.times or max(s.times) + 2 * max(s.period, spacing(sorted(s.times), s.period)) < t1
               for s in power)


def window_rows(series: list[Series], t0: float, t1: float, *, power_metric: str | None, waited_s: float,
                notes: list[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Samples for [t0, t1]: values at bucket middles, interpolated edge values at t0 and t1; the
    period used per device; what is missing of the power data appended to ``notes``."""
    by_dev: dict[str, dict[float, dict[str, Any]]] = {}
    effective: dict[str, int] = {}
    for s in series:
        if not s.times:
            continue
        pairs = sorted({t: v for t, v in zip(s.times, s.values, strict=False)}.items())
        tb = [t for t, _ in pairs]
        vals = [v * s.metric.scale for _, v in pairs]
        bucket = s.period
        if s.metric.metric == power_metric or s.device not in effective:
            effective[s.device] = bucket
        tp = [t + bucket / 2.0 for t in tb]
        hold = max(bucket, spacing(tp, bucket))
        rows = by_dev.setdefault(s.device, {})
        for t, v in zip(tp, vals, strict=True):
            if t0 < t < t1:
                rows.setdefault(t, {})[s.column] = v
        for edge in (t0, t1):
            at_edge = edge_value(tp, vals, edge, hold)
            if at_edge is not None:
                rows.setdefault(edge, {})[s.column] = at_edge
        first, last = tp[0], tp[-1]
        if s.metric.metric == power_metric:
            if first - t0 > hold:
                notes.append(f"{s.device}: {s.metric.metric}: no data for the first {first - t0:.0f} s "
                                  "of the run")
            if t1 - last > hold:
                notes.append(f"{s.device}: {s.metric.metric}: no data for the last {t1 - last:.0f} s of "
                                  f"the run (still missing after waiting {waited_s:.0f} s; the agent "
                                  "flushes every 60 s by default: fetch again later, or raise wait_s)")
            gaps = [b - a for a, b in zip(tp, tp[1:], strict=False) if t0 <= a and b <= t1 and b - a > 3 * hold]
            if gaps:
                notes.append(f"{s.device}: {s.metric.metric}: {len(gaps)} gap(s) in the data (longest "
                                  f"{max(gaps):.0f} s), bridged linearly")
    out: list[dict[str, Any]] = []
    for dev in sorted(by_dev):
        for t in sorted(by_dev[dev]):
            out.append({"t": t, "device": dev, **by_dev[dev][t]})
    return out, effective


def spacing(t: list[float], default: float) -> float:
    """The typical interval between readings (median difference)."""
    if len(t) < 2:
        return float(default)
    d = sorted(b - a for a, b in zip(t, t[1:], strict=False))
    return float(d[len(d) // 2])


def edge_value(tp: list[float], vals: list[float], edge: float, hold: float) -> float | None:
    """The value at ``edge``: interpolated between the points around it, or the nearest point's value
    when it lies within ``hold`` outside the data; None when there is no data near."""
    if not tp:
        return None
    if edge <= tp[0]:
        return vals[0] if tp[0] - edge <= hold else None
    if edge >= tp[-1]:
        return vals[-1] if edge - tp[-1] <= hold else None
    j = bisect.bisect_right(tp, edge)
    a, b = tp[j - 1], tp[j]
    if b - a > 3 * hold:  # inside a long gap: no value
        return None
    w = (edge - a) / (b - a)
    return vals[j - 1] + w * (vals[j] - vals[j - 1])

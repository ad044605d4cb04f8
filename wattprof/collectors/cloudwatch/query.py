"""GetMetricData rules as pure functions: which period a series may be read at, and how a set of
queries is split into calls that stay within the API's limits.

From botocore's CloudWatch model and the AWS user guide (REFERENCE.md "AWS CloudWatch"):

- Standard-resolution data (StorageResolution 60: the agent's default 60 s interval, all Container
  Insights data) is read at a period that is a multiple of 60 s. High-resolution data
  (StorageResolution 1, the agent's interval below 60 s) may also be read at 1, 5, 10, 20 or 30 s.
- Retention: sub-minute periods for 3 hours, 60 s for 15 days, 300 s for 63 days, 3600 s for 455
  days (a window older than that is read at the coarser period).
- One call: at most 500 queries and 100,800 data points in all. The throttling quota is counted in
  estimated data points (queries x window / period), so a 1 s period over data published every
  10 s costs ten times the points of a 10 s period for the same readings: read each series at the
  period its readings come at, not finer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import CollectorError, InputError

#: CloudWatch keeps data at period P for this long (REFERENCE.md; AWS "Metrics retention").
RETENTION: tuple[tuple[float, int], ...] = (
    (3 * 3600.0, 1),  # high-resolution (sub-minute) data: 3 hours
    (15 * 86400.0, 60),
    (63 * 86400.0, 300),
    (455 * 86400.0, 3600),
)
SUB_MINUTE_PERIODS = (1, 5, 10, 20, 30)
MAX_QUERIES_PER_CALL = 500
MAX_POINTS_PER_CALL = 100_800


def finest_kept(t0: float, now: float) -> int:
    """The finest period CloudWatch still keeps for data starting at ``t0``."""
    age = max(0.0, now - t0)
    finest = next((p for limit, p in RETENTION if age <= limit), None)
    if finest is None:
        raise CollectorError(f"the window starts {age / 86400:.0f} days ago: CloudWatch keeps metrics for 455 days")
    return finest


def valid_period(p: int, *, high_resolution: bool = True) -> bool:
    if p <= 0:
        return False
    if p >= 60:
        return p % 60 == 0
    return high_resolution and p in SUB_MINUTE_PERIODS


def period_for_interval(interval_s: float) -> int:
    """The coarsest valid period no longer than the readings' interval (finer adds no data)."""
    if interval_s >= 60:
        return 60
    return max((p for p in SUB_MINUTE_PERIODS if p <= interval_s + 1e-9), default=1)


def choose_period(t0: float, now: float, requested: int | str | None = "auto", *,
                  interval_s: float | None = None, high_resolution: bool = True) -> int:
    """The period to read a series at: ``requested`` (checked), else the period its readings come
    at (``interval_s``; 1 s when unknown), never finer than CloudWatch still keeps for the window,
    and a multiple of 60 for standard-resolution data."""
    finest = finest_kept(t0, now)
    if requested in (None, "", "auto"):
        p = period_for_interval(interval_s) if interval_s else 1
        if not high_resolution:
            p = max(p, 60)
        if p < finest:
            return finest
        return p
    try:
        p = int(requested)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"cloudwatch period must be 'auto' or seconds, not {requested!r}") from None
    if not valid_period(p):
        raise InputError(f"cloudwatch period {p}: use 1, 5, 10, 20, 30, 60 or a multiple of 60 seconds")
    if not high_resolution and p < 60:
        raise InputError(f"cloudwatch period {p} s: these series are standard resolution (one point per minute, "
                         "the agent's default interval and all Container Insights data): use 60, a multiple of "
                         "60, or auto")
    if p < finest:
        raise CollectorError(f"cloudwatch period {p} s: CloudWatch keeps only {finest} s data for a window "
                             f"starting {(now - t0) / 3600:.1f} h ago (use period={finest} or auto)")
    return p


def n_points(start: float, end: float, period: int) -> int:
    return max(1, math.ceil((end - start) / period))


@dataclass(frozen=True)
class Call:
    """One GetMetricData call: the indices of its queries, and its time range."""

    queries: tuple[int, ...]
    start: float
    end: float
    period: int

    @property
    def points(self) -> int:
        return len(self.queries) * n_points(self.start, self.end, self.period)


def plan_calls(n_queries: int, start: float, end: float, period: int, *,
               max_queries: int = MAX_QUERIES_PER_CALL, max_points: int = MAX_POINTS_PER_CALL) -> list[Call]:
    """Calls covering ``n_queries`` queries over [start, end) at ``period`` with no call above
    ``max_queries`` queries or ``max_points`` estimated data points (long windows are cut into
    period-aligned pieces)."""
    if n_queries <= 0 or end <= start:
        return []
    per_query = n_points(start, end, period)
    if per_query <= max_points:
        step = max(1, min(max_queries, max_points // per_query))
        return [Call(tuple(range(i, min(i + step, n_queries))), start, end, period)
                for i in range(0, n_queries, step)]
    span = max_points * period  # one query per call, the window cut into pieces
    calls = []
    t = start
    while t < end:
        t2 = min(end, t + span)
        calls += [Call((q,), t, t2, period) for q in range(n_queries)]
        t = t2
    return calls

"""Reading the series' datapoints: GetMetricData within the per-call limits (:mod:`.query`), the
period each series is read at (a cheap 60 s SampleCount probe tells the publisher's interval),
paging and re-querying ``PartialData``, AWS errors as one-line :class:`CollectorError` s. A
mixin of :class:`~.collector.CloudWatchCollector`."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ...clock import Clock
from ...errors import CollectorError
from .aws import Retry, error_text, is_throttle
from .buckets import Series
from .query import choose_period, plan_calls
from .sources import SourceSpec


def ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def epoch(x: Any) -> float:
    if isinstance(x, datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=UTC)
        return x.timestamp()
    return float(x)


class MetricDataReader:
    """GetMetricData for the collector's series (see the module docstring)."""

    clock: Clock
    spec: SourceSpec
    namespace: str
    period: int | str
    retry: Retry
    notes: list[str]
    _series: list[Series]

    if TYPE_CHECKING:  # the collector's
        @property
        def client(self) -> Any: ...

    def _aws(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` and turn AWS/botocore failures into one-line CollectorErrors."""
        try:
            import botocore.exceptions as bex
        except ImportError:
            raise CollectorError("boto3 is not installed (pip install 'wattprof[aws]')") from None
        try:
            return fn()
        except bex.ClientError as e:
            extra = " (throttled: retries exhausted)" if is_throttle(e) else ""
            raise CollectorError(f"cloudwatch {what}: {error_text(e)}{extra}") from None
        except bex.NoCredentialsError:
            raise CollectorError(f"cloudwatch {what}: no AWS credentials found") from None
        except bex.BotoCoreError as e:
            raise CollectorError(f"cloudwatch {what}: {type(e).__name__}: {e}") from None

    def _read(self, t0: float, t1: float) -> None:
        """Probe each series' interval (high vs standard resolution), pick its period, read it."""
        now = max(self.clock.time(), t1)
        margin = 60.0
        p_start = math.floor((t0 - margin) / 60) * 60
        p_end = math.ceil((t1 + margin) / 60) * 60
        unknown = [s for s in self._series if s.interval_s is None]
        if self.spec.resolution == "standard":
            for s in unknown:
                s.interval_s, s.high_resolution = 60.0, False
        elif unknown:
            counts = self._query(unknown, p_start, p_end, 60, "SampleCount", keep=False)
            for s in unknown:
                c = [v for v in counts.get(id(s), []) if v > 0]
                if c:  # readings per minute: 6 at the agent's 10 s interval, 1 at its default 60 s
                    per_min = sorted(c)[len(c) // 2]
                    s.high_resolution = max(c) >= 2
                    s.interval_s = 60.0 / per_min if s.high_resolution else 60.0
        groups: dict[int, list[Series]] = {}
        for s in self._series:
            if s.interval_s is None:  # no reading in the window (yet): nothing to read at any period
                s.times, s.values = [], []
                continue
            s.period = choose_period(t0, now, self.period, interval_s=s.interval_s, high_resolution=s.high_resolution)
            groups.setdefault(s.period, []).append(s)
        for period, group in sorted(groups.items()):
            start = math.floor((t0 - max(period, 60)) / period) * period
            end = math.ceil((t1 + max(period, 60)) / period) * period
            self._query(group, start, end, period, "Average")

    def _query(self, series: list[Series], start: float, end: float, period: int, stat: str, *,
               keep: bool = True) -> dict[int, list[float]]:
        """Read ``stat`` of every series for [start, end) (into the series when ``keep``; the values
        by ``id(series)`` otherwise), within the per-call limits, re-querying PartialData."""
        got: dict[int, tuple[list[float], list[float]]] = {id(s): ([], []) for s in series}
        todo = [(s, start) for s in series]
        for attempt in range(3):  # PartialData left after paging: re-query from the last point
            partial: list[tuple[Series, float]] = []
            for st in sorted({x for _, x in todo}):
                group = [s for s, x in todo if x == st]
                if st >= end:
                    continue
                for call in plan_calls(len(group), st, end, period):
                    partial += self._call([group[i] for i in call.queries], call.start, call.end, period, stat, got)
            if not partial:
                break
            todo = partial
            if attempt == 2:
                for s, _ in partial:
                    self.notes.append(f"{s.device}: {s.metric.metric}: CloudWatch still returned PartialData "
                                      "after re-querying: the series may be incomplete")
        if keep:
            for s in series:
                s.times, s.values = got[id(s)]
        return {k: v for k, (_, v) in got.items()}

    def _call(self, group: list[Series], st: float, end: float, period: int, stat: str,
              got: dict[int, tuple[list[float], list[float]]]) -> list[tuple[Series, float]]:
        queries = [{"Id": f"q{j}", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self.namespace, "MetricName": s.metric.metric,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in s.dims.items()]},
            "Period": period, "Stat": stat}} for j, s in enumerate(group)]
        status: dict[str, str] = {}

        def run() -> None:
            for page in self.retry.pages(self.client, "get_metric_data", MetricDataQueries=queries,
                                         StartTime=ts(st), EndTime=ts(end), ScanBy="TimestampAscending"):
                for msg in page.get("Messages") or []:
                    self.notes.append(f"GetMetricData: {msg.get('Code')}: {msg.get('Value')}")
                for r in page.get("MetricDataResults", []):
                    s = group[int(r["Id"][1:])]
                    times, values = got[id(s)]
                    times.extend(epoch(x) for x in r.get("Timestamps", []))
                    values.extend(float(v) for v in r.get("Values", []))
                    status[r["Id"]] = r.get("StatusCode", "Complete")
                    for msg in r.get("Messages") or []:
                        self.notes.append(f"{s.device}: {s.metric.metric}: {msg.get('Code')}: {msg.get('Value')}")

        self._aws("GetMetricData", run)
        partial: list[tuple[Series, float]] = []
        for j, s in enumerate(group):
            code = status.get(f"q{j}", "Complete")
            if code == "PartialData":
                times = got[id(s)][0]
                partial.append((s, (max(times) + period) if times else st))
            elif code == "Forbidden":
                raise CollectorError(f"cloudwatch GetMetricData: access to {s.metric.metric} is forbidden "
                                     "(needs cloudwatch:GetMetricData)")
            elif code == "InternalError":
                self.notes.append(f"{s.device}: {s.metric.metric}: CloudWatch InternalError: data may be missing")
        return partial

"""Put a run's results into Amazon CloudWatch as custom metrics (PutMetricData).

Metrics (namespace ``WattProf`` by default), all stamped with the run's end time:

=========================  ===============  ========================================================
metric                     unit             dimensions
=========================  ===============  ========================================================
``EnergyJoules``           None             base; base + ``Device``; base + ``Label``
``EnergyPerTokenJoules``   None             base; base + ``Label``  (when the run counted tokens)
``CO2eGrams``              None             base  (when the report has a carbon figure)
``AveragePowerWatts``      None             base + ``Device``; base + ``Label``
``DurationSeconds``        Seconds          base
``Tokens``                 Count            base
=========================  ===============  ========================================================

CloudWatch has no watt or joule unit: the unit is in the metric name and ``Unit="None"``
(REFERENCE.md). The base dimensions are ``Name`` (the run's name: a stable series across nightly
runs), ``RunId`` only on request (every distinct dimension set is a separately billed custom
metric), the run tags named in ``tags`` (an allow-list: nothing else of the run or of the
environment is ever sent) and explicit ``dimensions``. Requests stay within the API's limits: 1000
metric data and 1 MB per call, 30 dimensions per metric. Throttled calls are retried with bounded
exponential backoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..collectors.cloudwatch import Retry, error_text, is_throttle, make_client
from ..errors import CollectorError, InputError, WattprofError

if TYPE_CHECKING:
    from ..reports.model import Report

DEFAULT_NAMESPACE = "WattProf"
MAX_DATA_PER_CALL = 1000
MAX_BYTES_PER_CALL = 1_000_000  # 1 MB per PutMetricData request
BYTE_BUDGET = 900_000  # our estimate of a request's size stays under this
MAX_DIMENSIONS = 30
MAX_AGE_S = 14 * 86400  # CloudWatch accepts data points up to two weeks old


@dataclass(frozen=True)
class CloudWatchExport:
    """What :func:`export_cloudwatch` sent."""

    namespace: str
    data_points: int
    calls: int
    metric_names: tuple[str, ...]
    dimensions: dict[str, str]  # the base dimensions every data point carries
    timestamp: float  # Unix seconds (the run's end)
    retries: int = 0  # throttled calls that were retried
    skipped: tuple[str, ...] = field(default_factory=tuple)  # what was not sent, and why


def _check_dim(name: str, value: str) -> None:
    if not name or len(name) > 255 or name.startswith(":"):
        raise InputError(f"CloudWatch dimension name {name!r}: 1-255 characters, not starting with ':'")
    if not value or len(value) > 1024:
        raise InputError(f"CloudWatch dimension {name}={value!r}: the value must have 1-1024 characters")


def base_dimensions(report: Report, *, dimensions: Mapping[str, str] | None = None, tags: Sequence[str] = (),
                    include_run_id: bool = False) -> tuple[dict[str, str], list[str]]:
    """The dimensions every data point carries, and notes on allow-listed tags the run lacks."""
    run = report.run
    out: dict[str, str] = {"Name": str(run.get("name") or "run")}
    if include_run_id and run.get("id"):
        out["RunId"] = str(run["id"])
    skipped: list[str] = []
    run_tags = run.get("tags") or {}
    for key in tags:
        value = run_tags.get(key)
        if value is None or str(value) == "":
            skipped.append(f"tag {key!r}: not set on this run")
            continue
        out[str(key)] = str(value)
    for k, v in (dimensions or {}).items():
        out[str(k)] = str(v)
    for k, v in out.items():
        _check_dim(k, v)
    if len(out) + 1 > MAX_DIMENSIONS:  # +1: Device or Label
        raise InputError(f"{len(out)} dimensions: CloudWatch allows {MAX_DIMENSIONS} per metric, and one is needed "
                         "for Device/Label")
    return out, skipped


def _finite(x: float | None) -> bool:
    return x is not None and x == x and abs(x) != float("inf")


def build_metric_data(report: Report, *, dimensions: Mapping[str, str] | None = None, tags: Sequence[str] = (),
                      include_run_id: bool = False, per_device: bool = True, per_label: bool = True,
                      timestamp: float | None = None) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """The PutMetricData ``MetricData`` entries for ``report`` (also for a dry run), the base
    dimensions, and notes on what was left out."""
    base, skipped = base_dimensions(report, dimensions=dimensions, tags=tags, include_run_id=include_run_id)
    ts = _timestamp(report) if timestamp is None else float(timestamp)
    when = datetime.fromtimestamp(ts, tz=UTC)
    data: list[dict[str, Any]] = []

    def put(name: str, value: float | None, extra: Mapping[str, str] | None = None, unit: str = "None") -> None:
        if not _finite(value):
            return
        dims = {**base, **(extra or {})}
        data.append({"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                     "Timestamp": when, "Value": float(value), "Unit": unit})  # type: ignore[arg-type]

    put("EnergyJoules", report.energy_j)
    put("DurationSeconds", report.duration_s, unit="Seconds")
    put("Tokens", report.tokens, unit="Count")
    put("EnergyPerTokenJoules", report.j_per_token)
    if report.carbon is not None:
        put("CO2eGrams", report.carbon.g_co2e)
    else:
        skipped.append("CO2eGrams: the report has no carbon figure (no location given)")
    if per_device:
        for d in report.devices:
            if d.energy_source == "none":
                skipped.append(f"device {d.device}: no power data")
                continue
            _check_dim("Device", d.device)
            put("EnergyJoules", d.energy_j, {"Device": d.device})
            put("AveragePowerWatts", d.mean_power_w, {"Device": d.device})
    if per_label:
        for label, lr in report.by_label.items():
            _check_dim("Label", label)
            put("EnergyJoules", lr.energy_j, {"Label": label})
            put("EnergyPerTokenJoules", lr.j_per_token, {"Label": label})
            put("AveragePowerWatts", lr.mean_power_w, {"Label": label})
    return data, base, skipped


def _timestamp(report: Report) -> float:
    run = report.run
    for key in ("ended_at", "started_at"):
        v = run.get(key)
        if v is not None:
            t = float(v)
            return t + (report.duration_s if key == "started_at" else 0.0)
    t_last = [d.t_last for d in report.devices if d.t_last is not None]
    if t_last:
        return max(t_last)
    raise InputError("the run has no end time (and no samples): nothing to stamp the data points with")


def _size(datum: Mapping[str, Any]) -> int:
    # JSON size plus room for the protocol's field names: a safe overestimate of CBOR/query encodings.
    return len(json.dumps(datum, default=str)) + 64


def batches(data: Sequence[dict[str, Any]], *, max_items: int = MAX_DATA_PER_CALL,
            max_bytes: int = BYTE_BUDGET) -> list[list[dict[str, Any]]]:
    """Split ``data`` into PutMetricData calls within the count and size limits."""
    out: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = 0
    for d in data:
        n = _size(d)
        if cur and (len(cur) >= max_items or size + n > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(d)
        size += n
    if cur:
        out.append(cur)
    return out


def export_cloudwatch(report: Report, *, namespace: str = DEFAULT_NAMESPACE, dimensions: Mapping[str, str] | None = None,
                      tags: Sequence[str] = (), include_run_id: bool = False, per_device: bool = True,
                      per_label: bool = True, client: Any = None, endpoint_url: str | None = None,
                      region: str | None = None, profile: str | None = None,
                      client_factory: Callable[..., Any] | None = None, max_retries: int = 5, backoff_s: float = 0.5,
                      sleep: Callable[[float], None] = time.sleep, now: float | None = None) -> CloudWatchExport:
    """Put ``report``'s results into CloudWatch; return what was sent.

    ``client``: a boto3 CloudWatch client (else one is made from ``region``/``endpoint_url``/
    ``profile``). ``tags``: run tag keys to add as dimensions (allow-list). ``dimensions``: extra
    constant dimensions. Raises InputError for bad arguments or a run too old for CloudWatch, and
    WattprofError when AWS refuses the data.
    """
    if not namespace or len(namespace) > 255 or namespace.startswith("AWS/") or namespace.startswith(":"):
        raise InputError(f"CloudWatch namespace {namespace!r}: 1-255 characters, not starting with 'AWS/' or ':'")
    data, base, skipped = build_metric_data(report, dimensions=dimensions, tags=tags, include_run_id=include_run_id,
                                            per_device=per_device, per_label=per_label)
    ts = _timestamp(report)
    age = (time.time() if now is None else now) - ts
    if age > MAX_AGE_S:
        raise InputError(f"the run ended {age / 86400:.1f} days ago: CloudWatch accepts data points up to two weeks "
                         "old")
    if age < -2 * 3600:
        raise InputError("the run's end time lies more than two hours in the future: CloudWatch would reject it")
    if client is None:
        try:
            client = make_client(region=region, endpoint_url=endpoint_url, profile=profile,
                                 client_factory=client_factory, region_hint="--aws-region REGION")
        except CollectorError as e:
            raise WattprofError(str(e)) from None
    retry = Retry(max_retries=max_retries, backoff_s=backoff_s, sleep=sleep)
    calls = 0
    from botocore.exceptions import BotoCoreError, ClientError

    for chunk in batches(data):
        try:
            retry.call(lambda chunk=chunk: client.put_metric_data(Namespace=namespace, MetricData=chunk))
        except ClientError as e:
            extra = " (throttled: retries exhausted)" if is_throttle(e) else ""
            raise WattprofError(f"CloudWatch PutMetricData ({calls} of {len(batches(data))} calls sent): "
                                f"{error_text(e)}{extra}") from None
        except BotoCoreError as e:
            raise WattprofError(f"CloudWatch PutMetricData: {type(e).__name__}: {e}") from None
        calls += 1
    return CloudWatchExport(namespace=namespace, data_points=len(data), calls=calls,
                            metric_names=tuple(sorted({d["MetricName"] for d in data})), dimensions=base,
                            timestamp=ts, retries=retry.retries, skipped=tuple(skipped))

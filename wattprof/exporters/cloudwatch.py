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

CloudWatch rejects a whole request whose dimension values are not ASCII, hold control characters
or are only whitespace: names and values are sanitised first (accents dropped, other characters
replaced with ``_``), and :attr:`CloudWatchExport.sanitised` says what was changed. PutMetricData
has no transactions: everything is built and checked before the first call, so AWS has no reason
to refuse a later batch; if one still fails (throttling, network, permissions), the error is a
:class:`PartialExportError` that says exactly which calls and data points went through.

``Device`` is the device's stable part by default (``gpu:0`` for ``cw:i-0abc.../gpu:0``): a device
id holding an instance id would make a new, separately billed custom metric for every ephemeral
instance. ``device_dimension="full"`` keeps the run's device ids.
"""

from __future__ import annotations

import functools
import json
import re
import time
import unicodedata
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
    sanitised: tuple[str, ...] = field(default_factory=tuple)  # dimension names/values changed to be accepted


class PartialExportError(WattprofError):
    """A multi-call export failed after some calls went through; ``sent`` says exactly what did."""

    def __init__(self, message: str, sent: CloudWatchExport, not_sent: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.not_sent = not_sent


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sanitize(text: str, *, limit: int = 1024) -> str:
    """``text`` as CloudWatch accepts a dimension name or value: ASCII (accents dropped, other
    characters as ``_``), control characters as spaces, trimmed, at least one visible character
    (``_`` otherwise), at most ``limit`` characters."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    plain = "".join(c if c.isascii() else "_" for c in plain)
    plain = _CONTROL.sub(" ", plain).strip()
    return (plain or "_")[:limit]


def stable_device(device: str) -> str:
    """The part of a device id that stays the same across machines: ``cw:i-0abc/gpu:0`` -> ``gpu:0``."""
    return device.rsplit("/", 1)[-1] or device


def _clean(name: str, value: str, notes: list[str]) -> tuple[str, str]:
    n, v = sanitize(name, limit=255), sanitize(value)
    if (n, v) != (name, value):
        note = f"dimension {name!r}={value!r} sent as {n}={v} (CloudWatch accepts only ASCII without control characters)"
        if note not in notes:
            notes.append(note)
    return n, v


def _check_dim(name: str, value: str) -> None:
    if not name or len(name) > 255 or name.startswith(":"):
        raise InputError(f"CloudWatch dimension name {name!r}: 1-255 characters, not starting with ':'")
    if not value or len(value) > 1024:
        raise InputError(f"CloudWatch dimension {name}={value!r}: the value must have 1-1024 characters")


def base_dimensions(report: Report, *, dimensions: Mapping[str, str] | None = None, tags: Sequence[str] = (),
                    include_run_id: bool = False, sanitised: list[str] | None = None
                    ) -> tuple[dict[str, str], list[str]]:
    """The dimensions every data point carries (sanitised, noted in ``sanitised``), and notes on
    allow-listed tags the run lacks."""
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
    notes = sanitised if sanitised is not None else []
    out = dict(_clean(k, v, notes) for k, v in out.items())
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
                      timestamp: float | None = None, device_dimension: str = "stable",
                      sanitised: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """The PutMetricData ``MetricData`` entries for ``report`` (also for a dry run), the base
    dimensions, and notes on what was left out (and, in ``sanitised``, on what was changed)."""
    if device_dimension not in ("stable", "full"):
        raise InputError(f"device_dimension {device_dimension!r}: expected stable or full")
    notes: list[str] = sanitised if sanitised is not None else []
    base, skipped = base_dimensions(report, dimensions=dimensions, tags=tags, include_run_id=include_run_id,
                                    sanitised=notes)
    ts = _timestamp(report) if timestamp is None else float(timestamp)
    when = datetime.fromtimestamp(ts, tz=UTC)
    data: list[dict[str, Any]] = []

    def put(name: str, value: float | None, extra: Mapping[str, str] | None = None, unit: str = "None") -> None:
        if not _finite(value):
            return
        dims = {**base, **dict(_clean(k, v, notes) for k, v in (extra or {}).items())}
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
    names = {d.device: d.device for d in report.devices}
    if device_dimension == "stable":
        short = [stable_device(d.device) for d in report.devices]
        for d in report.devices:
            if short.count(stable_device(d.device)) == 1:
                names[d.device] = stable_device(d.device)
            else:
                skipped.append(f"device {d.device}: its stable name {stable_device(d.device)} is shared with another "
                               "machine's device: sent under its full id")
    if per_device:
        for d in report.devices:
            if d.energy_source == "none":
                skipped.append(f"device {d.device}: no power data")
                continue
            put("EnergyJoules", d.energy_j, {"Device": names[d.device]})
            put("AveragePowerWatts", d.mean_power_w, {"Device": names[d.device]})
    if per_label:
        for label, lr in report.by_label.items():
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
                      per_label: bool = True, device_dimension: str = "stable", client: Any = None,
                      endpoint_url: str | None = None, region: str | None = None, profile: str | None = None,
                      client_factory: Callable[..., Any] | None = None, max_retries: int = 5, backoff_s: float = 0.5,
                      sleep: Callable[[float], None] = time.sleep, now: float | None = None) -> CloudWatchExport:
    """Put ``report``'s results into CloudWatch; return what was sent.

    ``client``: a boto3 CloudWatch client (else one is made from ``region``/``endpoint_url``/
    ``profile``). ``tags``: run tag keys to add as dimensions (allow-list). ``dimensions``: extra
    constant dimensions. ``device_dimension``: ``stable`` (``gpu:0``) or ``full`` (the run's device
    id). Raises InputError for bad arguments or a run too old for CloudWatch, WattprofError when AWS
    refuses the data, and PartialExportError when it refused a call after earlier ones went through.
    """
    if not namespace or len(namespace) > 255 or namespace.startswith("AWS/") or namespace.startswith(":"):
        raise InputError(f"CloudWatch namespace {namespace!r}: 1-255 characters, not starting with 'AWS/' or ':'")
    sanitised: list[str] = []
    data, base, skipped = build_metric_data(report, dimensions=dimensions, tags=tags, include_run_id=include_run_id,
                                            per_device=per_device, per_label=per_label,
                                            device_dimension=device_dimension, sanitised=sanitised)
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
    from botocore.exceptions import BotoCoreError, ClientError

    chunks = batches(data)  # everything is built and checked before the first call
    sent: list[dict[str, Any]] = []

    def summary(items: list[dict[str, Any]], calls: int) -> CloudWatchExport:
        return CloudWatchExport(namespace=namespace, data_points=len(items), calls=calls,
                                metric_names=tuple(sorted({d["MetricName"] for d in items})), dimensions=base,
                                timestamp=ts, retries=retry.retries, skipped=tuple(skipped),
                                sanitised=tuple(sanitised))

    for i, chunk in enumerate(chunks):
        try:
            retry.call(functools.partial(client.put_metric_data, Namespace=namespace, MetricData=chunk))
        except (ClientError, BotoCoreError) as e:
            why = (f"{error_text(e)}{' (throttled: retries exhausted)' if is_throttle(e) else ''}"
                   if isinstance(e, ClientError) else f"{type(e).__name__}: {e}")
            if i == 0:
                raise WattprofError(f"CloudWatch PutMetricData: nothing was sent: {why}") from None
            left = len(data) - len(sent)
            raise PartialExportError(
                f"CloudWatch PutMetricData: call {i + 1} of {len(chunks)} failed: {why}. Sent: {len(sent)} data points "
                f"in {i} call(s) (metric data 1-{len(sent)} of {len(data)}); not sent: {left}. Re-running the export "
                f"sends all {len(data)} again (a repeated data point is one more sample of that minute)",
                summary(sent, i), left) from None
        sent.extend(chunk)
    return summary(sent, len(chunks))

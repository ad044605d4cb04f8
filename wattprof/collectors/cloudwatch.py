"""GPU (and Neuron) metrics read back from Amazon CloudWatch for a run's time window.

``cloudwatch[:source=agent,host=...,instance_id=...,period=auto,region=...,endpoint_url=...]``

A :class:`~wattprof.collectors.base.RemoteCollector`: the recorder calls :meth:`fetch` once, when the
run stops, for the run's whole window. Sources (REFERENCE.md, "AWS CloudWatch"):

- ``agent`` (default): the CloudWatch agent's ``nvidia_gpu`` section, namespace ``CWAgent``, metrics
  ``nvidia_smi_<field>`` with dimensions ``index``, ``name``, ``host`` (+ ``arch``, + appended ones
  such as ``InstanceId``). ``nvidia_smi_power_draw`` is nvidia-smi's ``power.draw``: a trailing 1 s
  average, so it lands in ``power_avg_w``.
- ``container-insights``: EKS Container Insights, namespace ``ContainerInsights``, ``node_gpu_*``
  with dimensions ``ClusterName, NodeName, InstanceId, InstanceType, GpuDevice`` (power from DCGM).
- ``neuron``: Container Insights' ``node_neuroncore_utilization`` per ``NeuronCore`` (no power:
  Neuron power never reaches CloudWatch).

Series are discovered with ListMetrics (filtered by the configured dimension values; roll-ups
without a per-device dimension are skipped) or named explicitly (``discover=0``, ``indices=0;1``).
Data comes from GetMetricData (paginated) at the finest period CloudWatch still keeps for the
window: 1 s for data younger than 3 hours, then 60 s (15 days), 300 s (63 days), 3600 s (455
days), or the ``period`` option. Standard-resolution series (the agent's default 60 s interval)
are recognised from their minute-aligned timestamps and treated as 60 s buckets.

Timing model: a datapoint's timestamp is the start of its period and its value is the average of
the readings in it, so each value is placed at the middle of its bucket; power between those
points is linear, and the run's edges get a value interpolated from the neighbouring points (held
for at most one reading interval). The energy of the run is the integral of that curve over the
run's window. Devices are ``cw:<InstanceId or host>/gpu:<index>`` (``neuron:<core>`` for Neuron).

Throttling (``Throttling``/``ThrottlingException``/HTTP 429) is retried with bounded exponential
backoff; ``PartialData`` results are paged and re-queried; what could not be read becomes a
:class:`~wattprof.errors.CollectorError` (the recorder turns it into an event) or a note in
:attr:`CloudWatchCollector.notes`. boto3 is imported only when the collector is used (extra
``wattprof[aws]``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, InputError
from .base import RemoteCollector

log = logging.getLogger(__name__)

#: CloudWatch keeps data at period P for this long (REFERENCE.md; AWS "Metrics retention").
RETENTION: tuple[tuple[float, int], ...] = (
    (3 * 3600.0, 1),  # high-resolution (sub-minute) data: 3 hours
    (15 * 86400.0, 60),
    (63 * 86400.0, 300),
    (455 * 86400.0, 3600),
)
SUB_MINUTE_PERIODS = (1, 5, 10, 30)
MAX_QUERIES_PER_CALL = 500  # GetMetricData limit
THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                            "TooManyRequestsException", "RequestThrottled", "RequestThrottledException"})
MAX_BACKOFF_S = 20.0
MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class MetricMap:
    """One CloudWatch metric and the schema column it fills (value x scale)."""

    metric: str
    column: str
    scale: float = 1.0


@dataclass(frozen=True)
class SourceSpec:
    key: str
    label: str
    namespace: str
    kind: str  # device kind: gpu | neuron
    device_dim: str  # the per-device dimension (roll-ups without it are skipped)
    host_dims: tuple[str, ...]  # dimensions naming the machine, preferred first
    host_filter_dim: str  # the dimension the ``host`` option filters on
    metrics: tuple[MetricMap, ...]
    power_metric: str | None


SOURCES: dict[str, SourceSpec] = {
    "agent": SourceSpec(
        "agent", "CloudWatch agent", "CWAgent", "gpu", "index", ("InstanceId", "host"), "host",
        (
            MetricMap("nvidia_smi_power_draw", "power_avg_w"),
            MetricMap("nvidia_smi_utilization_gpu", "util_pct"),
            MetricMap("nvidia_smi_utilization_memory", "mem_util_pct"),
            MetricMap("nvidia_smi_temperature_gpu", "temp_c"),
            # nvidia-smi reports memory in MiB (the agent's docs say "MB")
            MetricMap("nvidia_smi_memory_used", "mem_used_bytes", MIB),
            MetricMap("nvidia_smi_memory_total", "mem_total_bytes", MIB),
            MetricMap("nvidia_smi_clocks_current_sm", "sm_clock_mhz"),
            MetricMap("nvidia_smi_clocks_current_memory", "mem_clock_mhz"),
        ),
        "nvidia_smi_power_draw",
    ),
    "container-insights": SourceSpec(
        "container-insights", "Container Insights", "ContainerInsights", "gpu", "GpuDevice",
        ("InstanceId", "NodeName"), "NodeName",
        (
            MetricMap("node_gpu_power_draw", "power_avg_w"),  # DCGM_FI_DEV_POWER_USAGE (W)
            MetricMap("node_gpu_utilization", "util_pct"),
            MetricMap("node_gpu_temperature", "temp_c"),
            MetricMap("node_gpu_memory_used", "mem_used_bytes"),
            MetricMap("node_gpu_memory_total", "mem_total_bytes"),
        ),
        "node_gpu_power_draw",
    ),
    "neuron": SourceSpec(
        "neuron", "Container Insights", "ContainerInsights", "neuron", "NeuronCore",
        ("InstanceId", "NodeName"), "NodeName",
        (MetricMap("node_neuroncore_utilization", "util_pct"),),
        None,
    ),
}


# ---- boto3 plumbing shared with wattprof.exporters.cloudwatch ----------------------------------------

def redact_url(url: str | None) -> str | None:
    """``url`` without any user:password part (never log or record credentials)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def resolve_region(region: str | None, session: Any) -> str | None:
    return region or getattr(session, "region_name", None) or os.environ.get("AWS_REGION") or None


def aws_available(*, region: str | None = None, profile: str | None = None) -> tuple[bool, str]:
    """Whether boto3 is importable and a region and credentials resolve (says which is missing).

    The region is checked first: without one nothing is looked up further (in particular not the
    EC2 instance metadata service)."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        return False, "boto3 is not installed (pip install 'wattprof[aws]')"
    try:
        session = boto3.Session(profile_name=profile)
        reg = resolve_region(region, session)
    except botocore.exceptions.ProfileNotFound:
        return False, f"AWS profile {profile!r} not found"
    except botocore.exceptions.BotoCoreError as e:
        return False, f"AWS configuration unreadable ({type(e).__name__})"
    if not reg:
        return False, "no AWS region: pass region=REGION, or set AWS_REGION / AWS_DEFAULT_REGION or a profile region"
    try:
        creds = session.get_credentials()
    except botocore.exceptions.BotoCoreError as e:
        return False, f"region {reg}; AWS credentials could not be resolved ({type(e).__name__})"
    if creds is None:
        return False, (f"region {reg}; no AWS credentials (environment, shared credentials/config file, SSO, "
                       "container or instance role)")
    return True, f"region {reg}; credentials from {getattr(creds, 'method', 'the default chain')}"


def make_client(*, region: str | None = None, endpoint_url: str | None = None, profile: str | None = None,
                client_factory: Callable[..., Any] | None = None, region_hint: str = "region=REGION") -> Any:
    """A CloudWatch client. ``client_factory`` is called like ``boto3.client`` (tests wrap it).
    ``region_hint``: how the caller's user passes a region (the collector option, or a CLI flag)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise CollectorError("boto3 is not installed (pip install 'wattprof[aws]')") from None
    from .. import __version__

    # botocore's own retries stay small: throttling is retried (with backoff) by call_with_retry.
    config = Config(retries={"mode": "standard", "total_max_attempts": 2},
                    user_agent_extra=f"wattprof/{__version__}")
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if client_factory is not None:
        if region:
            kwargs["region_name"] = region
        return client_factory("cloudwatch", **kwargs)
    session = boto3.Session(profile_name=profile)
    reg = resolve_region(region, session)
    if not reg:
        raise InputError(f"no AWS region: pass {region_hint}, or set AWS_REGION / AWS_DEFAULT_REGION")
    return session.client("cloudwatch", region_name=reg, **kwargs)


def is_throttle(err: BaseException) -> bool:
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in THROTTLE_CODES or status == 429


def error_text(err: BaseException) -> str:
    """A one-line description of a botocore error (code and message; never request details)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        e = response["Error"]
        return f"{e.get('Code', 'Error')}: {e.get('Message', '')}".strip().rstrip(":")
    return f"{type(err).__name__}: {err}"


@dataclass
class Retry:
    """Bounded exponential backoff with jitter for throttled calls."""

    max_retries: int = 5
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0  # how many throttled calls were retried in all

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * (2 ** attempt), MAX_BACKOFF_S) * (0.5 + random.random() / 2)  # noqa: S311

    def call(self, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import ClientError

        attempt = 0
        while True:
            try:
                return fn()
            except ClientError as e:
                if not is_throttle(e) or attempt >= self.max_retries:
                    raise
                self.sleep(self.delay(attempt))
                attempt += 1
                self.retries += 1

    def pages(self, client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every page of a paginated operation (botocore's paginator); a throttled page is retried
        from the last good page's NextToken."""
        from botocore.exceptions import ClientError
        from botocore.paginate import TokenEncoder

        token: str | None = None
        attempt = 0
        while True:
            config = {"StartingToken": token} if token else {}
            it = iter(client.get_paginator(operation).paginate(**kwargs, PaginationConfig=config))
            while True:
                try:
                    page = next(it)
                except StopIteration:
                    return
                except ClientError as e:
                    if not is_throttle(e) or attempt >= self.max_retries:
                        raise
                    self.sleep(self.delay(attempt))
                    attempt += 1
                    self.retries += 1
                    break  # restart the paginator from `token`
                attempt = 0
                yield page
                next_token = page.get("NextToken")
                if next_token:
                    token = TokenEncoder().encode({"NextToken": next_token})


# ---- the collector ---------------------------------------------------------------------------------------

@dataclass
class _Series:
    device: str
    metric: MetricMap
    dims: dict[str, str]
    times: list[float] = field(default_factory=list)  # bucket starts, Unix s
    values: list[float] = field(default_factory=list)


def parse_dims(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``"K=V;K=V"`` (``;`` because ``,`` separates collector options) or a mapping -> dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in str(value).split(";"):
        if not part.strip():
            continue
        k, eq, v = part.partition("=")
        if not eq or not k.strip() or not v.strip():
            raise InputError(f"cloudwatch dimensions: {part!r} is not NAME=VALUE (separate pairs with ';')")
        out[k.strip()] = v.strip()
    return out


def _device_part(value: str) -> str:
    """``"nvidia3"`` -> ``"3"``; ``"0"`` -> ``"0"``; anything else made id-safe."""
    m = re.search(r"(\d+)$", value)
    if m and (value.isdigit() or value[: m.start()].isalpha()):
        return str(int(m.group(1)))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value) or "x"


def choose_period(t0: float, now: float, requested: int | str | None = "auto") -> int:
    """The finest period CloudWatch still keeps for data starting at ``t0`` (or the requested one,
    checked against the retention)."""
    age = max(0.0, now - t0)
    finest = next((p for limit, p in RETENTION if age <= limit), None)
    if finest is None:
        raise CollectorError(f"the window starts {age / 86400:.0f} days ago: CloudWatch keeps metrics for 455 days")
    if requested in (None, "", "auto"):
        return finest
    try:
        p = int(requested)
    except (TypeError, ValueError):
        raise InputError(f"cloudwatch period must be 'auto' or seconds, not {requested!r}") from None
    if p <= 0 or (p < 60 and p not in SUB_MINUTE_PERIODS) or (p >= 60 and p % 60):
        raise InputError(f"cloudwatch period {p}: use 1, 5, 10, 30, 60 or a multiple of 60 seconds")
    if p < finest:
        raise CollectorError(f"cloudwatch period {p} s: CloudWatch keeps only {finest} s data for a window "
                             f"starting {age / 3600:.1f} h ago (use period={finest} or auto)")
    return p


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _epoch(x: Any) -> float:
    if isinstance(x, datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=UTC)
        return x.timestamp()
    return float(x)


class CloudWatchCollector(RemoteCollector):
    """GPU metrics of the CloudWatch agent (or Container Insights) for the run's window.

    Options (all optional): ``source`` agent | container-insights | neuron; ``namespace``;
    ``host`` (agent: the ``host`` dimension; Container Insights: ``NodeName``); ``instance_id``;
    ``cluster``; ``dimensions`` ("K=V;K=V", extra filters, or with ``discover=0`` the series'
    complete dimensions); ``indices`` ("0;1", with ``discover=0``); ``period`` (auto or seconds);
    ``all_hosts`` (allow series of several machines in one run); ``wait_s`` (wait for late data);
    ``region``, ``endpoint_url``, ``profile``; ``max_retries``, ``backoff_s``; ``client_factory``
    (Python only: called like ``boto3.client``).
    """

    name = "cloudwatch"
    metrics = ("power_avg_w", "util_pct", "mem_util_pct", "temp_c", "mem_used_bytes", "mem_total_bytes",
               "sm_clock_mhz", "mem_clock_mhz")

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, source: str = "agent", namespace: str | None = None,
                 host: str | None = None, instance_id: str | None = None, cluster: str | None = None,
                 dimensions: str | Mapping[str, Any] | None = None, discover: bool | int = True,
                 indices: str | int | None = None, period: int | str = "auto", all_hosts: bool | int = False,
                 wait_s: float = 0.0, region: str | None = None, endpoint_url: str | None = None,
                 profile: str | None = None, max_retries: int = 5, backoff_s: float = 0.5,
                 client_factory: Callable[..., Any] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(clock=clock)
        key = str(source).lower().replace("_", "-")
        key = {"cwagent": "agent", "containerinsights": "container-insights"}.get(key, key)
        if key not in SOURCES:
            raise InputError(f"cloudwatch source {source!r}: expected one of {', '.join(SOURCES)}")
        self.spec = SOURCES[key]
        self.namespace = namespace or self.spec.namespace
        self.host = None if host is None else str(host)
        self.instance_id = None if instance_id is None else str(instance_id)
        self.cluster = None if cluster is None else str(cluster)
        self.extra_dims = parse_dims(dimensions)
        self.discover = bool(discover)
        self.indices = [s.strip() for s in str(indices).split(";") if s.strip()] if indices is not None else []
        if not self.discover and not self.indices and self.spec.device_dim not in self.extra_dims:
            raise InputError(f"cloudwatch discover=0 needs indices=0;1;... or dimensions naming {self.spec.device_dim}")
        self.period = period
        self.all_hosts = bool(all_hosts)
        self.wait_s = float(wait_s)
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.client_factory = client_factory
        self.retry = Retry(max_retries=int(max_retries), backoff_s=float(backoff_s), sleep=sleep or time.sleep)
        self._client: Any = None
        self._series: list[_Series] = []
        self._devices: dict[str, dict[str, Any]] = {}
        #: Quality notes found while reading (partial data, missing metrics, late data ...).
        self.notes: list[str] = []
        self._open_notes: list[str] = []
        #: Device metadata completed by :meth:`fetch` (period actually used, notes); a recorder may
        #: merge it into the run's devices after the fetch.
        self.devices_after_fetch: dict[str, dict[str, Any]] = {}
        #: The period (s) of the last fetch, and the effective bucket of its power data.
        self.last_period: int | None = None

    # ---- collector API -----------------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        if self.client_factory is not None:
            try:
                import boto3  # noqa: F401
            except ImportError:
                return False, "boto3 is not installed (pip install 'wattprof[aws]')"
            return True, "client factory given"
        return aws_available(region=self.region, profile=self.profile)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"source": self.spec.key, "namespace": self.namespace, "period": self.period}
        for k in ("host", "instance_id", "cluster", "region", "profile"):
            if getattr(self, k):
                opts[k] = getattr(self, k)
        if self.extra_dims:
            opts["dimensions"] = dict(self.extra_dims)
        if not self.discover:
            opts["discover"] = False
            opts["indices"] = list(self.indices)
        if self.endpoint_url:
            opts["endpoint_url"] = redact_url(self.endpoint_url)
        return opts

    def open(self) -> dict[str, dict]:
        self.notes = []
        self._series = self._discover_series() if self.discover else self._explicit_series()
        self._open_notes = list(self.notes)
        self._devices = self._device_info(period=None)
        return {d: dict(info) for d, info in self._devices.items()}

    def fetch(self, t0: float, t1: float) -> list[dict[str, Any]]:
        if t1 <= t0:
            raise CollectorError(f"cloudwatch: empty window ({t0} .. {t1})")
        if not self._series:
            self.open()
        self.notes = list(self._open_notes)
        now = self.clock.time()
        period = choose_period(t0, max(now, t1), self.period)
        self.last_period = period
        margin = max(period, 60)
        start = math.floor((t0 - margin) / period) * period
        end = math.ceil((t1 + margin) / period) * period
        self._query(self._series, start, end, period)
        deadline = time.monotonic() + self.wait_s
        while self.wait_s > 0 and self._tail_missing(t1, period) and time.monotonic() < deadline:
            time.sleep(min(15.0, max(0.0, deadline - time.monotonic())))  # late data (agent flush, ingestion)
            self._query(self._series, start, end, period)
        rows, effective = self._rows(t0, t1, period)
        if not rows:
            raise CollectorError(
                f"cloudwatch: no datapoints for {len(self._series)} series in namespace {self.namespace} between "
                f"{_ts(t0).isoformat()} and {_ts(t1).isoformat()} (period {period} s): the agent publishes "
                "with a delay (force_flush_interval, 60 s by default); fetch again later or pass wait_s=90")
        self.devices_after_fetch = self._device_info(period=period, effective=effective)
        for n in self.notes:
            log.warning("cloudwatch: %s", n)
        return rows

    def close(self) -> None:
        self._client = None

    # ---- discovery ---------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(region=self.region, endpoint_url=self.endpoint_url, profile=self.profile,
                                       client_factory=self.client_factory)
        return self._client

    def _filters(self) -> dict[str, str]:
        f = dict(self.extra_dims)
        for dim, value in ((self.spec.host_filter_dim, self.host), ("InstanceId", self.instance_id),
                           ("ClusterName", self.cluster)):
            if value:
                f[dim] = value
        return f

    def _device_id(self, dims: Mapping[str, str]) -> str:
        machine = next((dims[d] for d in self.spec.host_dims if dims.get(d)), None) or "unknown"
        machine = re.sub(r"[/\s]+", "_", machine)
        return f"cw:{machine}/{self.spec.kind}:{_device_part(dims[self.spec.device_dim])}"

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

    def _discover_series(self) -> list[_Series]:
        filters = self._filters()
        recent = self.clock.time() > time.time() - 3 * 3600  # a live run: only recently active metrics
        chosen: dict[tuple[str, str], _Series] = {}
        for mm in self.spec.metrics:
            kwargs: dict[str, Any] = {"Namespace": self.namespace, "MetricName": mm.metric}
            if filters:
                kwargs["Dimensions"] = [{"Name": k, "Value": v} for k, v in filters.items()]
            if recent:
                kwargs["RecentlyActive"] = "PT3H"

            def listing(kwargs: dict[str, Any] = kwargs) -> list[dict[str, Any]]:
                return [m for page in self.retry.pages(self.client, "list_metrics", **kwargs)
                        for m in page.get("Metrics", [])]

            for m in self._aws("ListMetrics", listing):
                dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
                if self.spec.device_dim not in dims:
                    continue  # a roll-up over devices (aggregation_dimensions): would double count
                if any(dims.get(k) != v for k, v in filters.items()):
                    continue
                s = _Series(self._device_id(dims), mm, dims)
                key = (s.device, mm.metric)
                old = chosen.get(key)
                if old is None or len(dims) > len(old.dims):
                    chosen[key] = s  # several dimension sets for one device: the most specific one
        series = list(chosen.values())
        where = f"namespace {self.namespace}" + (f" with {_fmt_dims(filters)}" if filters else "")
        if not series:
            raise CollectorError(
                f"cloudwatch: no {self.spec.label} metrics ({', '.join(m.metric for m in self.spec.metrics[:2])}, ...) "
                f"per {self.spec.device_dim} in {where}"
                f"{f' (region {self.region})' if self.region else ''}. Is the agent publishing them (nvidia_gpu "
                "section) to this region? New metrics can take up to 15 minutes to be listed: pass discover=0 "
                "with indices=... and the series' dimensions to query them directly")
        machines = sorted({s.device.split("/", 1)[0] for s in series})
        if len(machines) > 1 and not (filters or self.all_hosts):
            raise CollectorError(
                f"cloudwatch: {len(machines)} machines publish {self.spec.label} metrics in {where} "
                f"({', '.join(m[3:] for m in machines[:5])}{', ...' if len(machines) > 5 else ''}): choose one with "
                "host=... or instance_id=..., or pass all_hosts=1 to sum them all")
        if self.spec.power_metric:
            powered = {s.device for s in series if s.metric.metric == self.spec.power_metric}
            for dev in sorted({s.device for s in series} - powered):
                self.notes.append(f"{dev}: no {self.spec.power_metric} metric in {where}: no energy for it")
        return sorted(series, key=lambda s: (s.device, s.metric.metric))

    def _explicit_series(self) -> list[_Series]:
        base = self._filters()  # the given dimensions first, in their order
        dim_sets = ([{self.spec.device_dim: i, **{k: v for k, v in base.items() if k != self.spec.device_dim}}
                     for i in self.indices] if self.indices else [base])
        return [_Series(self._device_id(d), mm, d) for d in dim_sets for mm in self.spec.metrics]

    def _device_info(self, *, period: int | None, effective: Mapping[str, int] | None = None) -> dict[str, dict]:
        out: dict[str, dict[str, Any]] = {}
        for s in self._series:
            info = out.setdefault(s.device, {
                "kind": self.spec.kind, "name": s.dims.get("name") or s.dims.get("InstanceType"),
                "collector": self.name, "namespace": self.namespace, "dimensions": dict(s.dims),
                "host": s.dims.get("host") or s.dims.get("NodeName"), "instance_id": s.dims.get("InstanceId"),
                "index": s.dims.get(self.spec.device_dim), "power_source": None,
            })
            if s.metric.metric == self.spec.power_metric:
                p = (effective or {}).get(s.device, period)
                when = f"period {p} s" if p else "period chosen when the run stops"
                info["power_source"] = (f"measured: {self.spec.label} {self.spec.power_metric} "
                                        f"({when}, statistic Average)")
                if len(s.dims) > len(info["dimensions"]):
                    info["dimensions"] = dict(s.dims)
        for dev, info in out.items():
            if info["power_source"] is None:
                info["power_source"] = f"none: {self.spec.label} publishes no power for this device"
            dev_notes = [n for n in self.notes if n.startswith(dev + ":")]
            if dev_notes:
                info["notes"] = dev_notes
        return out

    # ---- data --------------------------------------------------------------------------------------
    def _query(self, series: list[_Series], start: float, end: float, period: int) -> None:
        """Fill every series' (times, values) for [start, end) with GetMetricData."""
        for s in series:
            s.times, s.values = [], []
        todo = [(s, start) for s in series]
        for attempt in range(3):  # PartialData left after paging: re-query from the last point
            partial: list[tuple[_Series, float]] = []
            for i in range(0, len(todo), MAX_QUERIES_PER_CALL):
                chunk = todo[i:i + MAX_QUERIES_PER_CALL]
                partial += self._query_chunk(chunk, end, period)
            if not partial:
                return
            todo = partial
            if attempt == 2:
                for s, _ in partial:
                    self.notes.append(f"{s.device}: {s.metric.metric}: CloudWatch still returned PartialData "
                                      "after re-querying: the series may be incomplete")

    def _query_chunk(self, chunk: list[tuple[_Series, float]], end: float, period: int) -> list[tuple[_Series, float]]:
        starts = {st for _, st in chunk}
        partial: list[tuple[_Series, float]] = []
        for st in sorted(starts):  # one call per distinct start (only differs on re-queries)
            group = [s for s, x in chunk if x == st]
            if st >= end:
                continue
            queries = [{"Id": f"q{j}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": self.namespace, "MetricName": s.metric.metric,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in s.dims.items()]},
                "Period": period, "Stat": "Average"}} for j, s in enumerate(group)]
            status: dict[str, str] = {}

            def run(queries: list[dict] = queries, st: float = st, group: list[_Series] = group,
                    status: dict[str, str] = status) -> None:
                for page in self.retry.pages(self.client, "get_metric_data", MetricDataQueries=queries,
                                             StartTime=_ts(st), EndTime=_ts(end), ScanBy="TimestampAscending"):
                    for msg in page.get("Messages") or []:
                        self.notes.append(f"GetMetricData: {msg.get('Code')}: {msg.get('Value')}")
                    for r in page.get("MetricDataResults", []):
                        s = group[int(r["Id"][1:])]
                        s.times.extend(_epoch(x) for x in r.get("Timestamps", []))
                        s.values.extend(float(v) for v in r.get("Values", []))
                        status[r["Id"]] = r.get("StatusCode", "Complete")
                        for msg in r.get("Messages") or []:
                            self.notes.append(f"{s.device}: {s.metric.metric}: {msg.get('Code')}: {msg.get('Value')}")

            self._aws("GetMetricData", run)
            for j, s in enumerate(group):
                code = status.get(f"q{j}", "Complete")
                if code == "PartialData":
                    last = max(s.times) if s.times else st
                    partial.append((s, last + period))
                elif code == "Forbidden":
                    raise CollectorError(f"cloudwatch GetMetricData: access to {s.metric.metric} is forbidden "
                                         "(needs cloudwatch:GetMetricData)")
                elif code == "InternalError":
                    self.notes.append(f"{s.device}: {s.metric.metric}: CloudWatch InternalError: data may be missing")
        return partial

    def _tail_missing(self, t1: float, period: int) -> bool:
        power = [s for s in self._series if s.metric.metric == self.spec.power_metric] or self._series
        return any(not s.times or max(s.times) + 2 * max(period, _spacing(sorted(s.times), period)) < t1
                   for s in power)

    def _rows(self, t0: float, t1: float, period: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Samples for [t0, t1]: values at bucket middles, interpolated edge values at t0 and t1."""
        by_dev: dict[str, dict[float, dict[str, Any]]] = {}
        effective: dict[str, int] = {}
        for s in self._series:
            if not s.times:
                continue
            pairs = sorted({t: v for t, v in zip(s.times, s.values, strict=False)}.items())
            tb = [t for t, _ in pairs]
            vals = [v * s.metric.scale for _, v in pairs]
            bucket = period
            if period < 60 and all(t % 60 == 0 for t in tb) and (len(tb) == 1 or _min_diff(tb) >= 60):
                bucket = 60  # a standard-resolution series: CloudWatch stores it per minute
            if s.metric.metric == self.spec.power_metric or s.device not in effective:
                effective[s.device] = bucket
            tp = [t + bucket / 2.0 for t in tb]
            hold = max(bucket, _spacing(tp, bucket))
            rows = by_dev.setdefault(s.device, {})
            for t, v in zip(tp, vals, strict=True):
                if t0 < t < t1:
                    rows.setdefault(t, {})[s.metric.column] = v
            for edge in (t0, t1):
                v = _edge_value(tp, vals, edge, hold)
                if v is not None:
                    rows.setdefault(edge, {})[s.metric.column] = v
            first, last = tp[0], tp[-1]
            if s.metric.metric == self.spec.power_metric:
                if first - t0 > hold:
                    self.notes.append(f"{s.device}: {s.metric.metric}: no data for the first {first - t0:.0f} s "
                                      "of the run")
                if t1 - last > hold:
                    self.notes.append(f"{s.device}: {s.metric.metric}: no data for the last {t1 - last:.0f} s of "
                                      "the run (the agent flushes every 60 s by default; pass wait_s=90 or "
                                      "fetch again later)")
                gaps = [b - a for a, b in zip(tp, tp[1:], strict=False) if t0 <= a and b <= t1 and b - a > 3 * hold]
                if gaps:
                    self.notes.append(f"{s.device}: {s.metric.metric}: {len(gaps)} gap(s) in the data (longest "
                                      f"{max(gaps):.0f} s), bridged linearly")
        out: list[dict[str, Any]] = []
        for dev in sorted(by_dev):
            for t in sorted(by_dev[dev]):
                out.append({"t": t, "device": dev, **by_dev[dev][t]})
        return out, effective


def _fmt_dims(d: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _min_diff(t: list[float]) -> float:
    return min((b - a for a, b in zip(t, t[1:], strict=False)), default=math.inf)


def _spacing(t: list[float], default: float) -> float:
    """The typical interval between readings (median difference)."""
    if len(t) < 2:
        return float(default)
    d = sorted(b - a for a, b in zip(t, t[1:], strict=False))
    return float(d[len(d) // 2])


def _edge_value(tp: list[float], vals: list[float], edge: float, hold: float) -> float | None:
    """The value at ``edge``: interpolated between the points around it, or the nearest point's value
    when it lies within ``hold`` outside the data; None when there is no data near."""
    if not tp:
        return None
    if edge <= tp[0]:
        return vals[0] if tp[0] - edge <= hold else None
    if edge >= tp[-1]:
        return vals[-1] if edge - tp[-1] <= hold else None
    import bisect

    j = bisect.bisect_right(tp, edge)
    a, b = tp[j - 1], tp[j]
    if b - a > 3 * hold:  # inside a long gap: no value
        return None
    w = (edge - a) / (b - a)
    return vals[j - 1] + w * (vals[j] - vals[j - 1])

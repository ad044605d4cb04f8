"""GPU (and Neuron) metrics read back from Amazon CloudWatch for a run's time window.

``cloudwatch[:source=agent,instance_id=...,host=...,wait_s=120,region=...,endpoint_url=...]``

A :class:`~wattprof.collectors.base.RemoteCollector`: the recorder calls :meth:`fetch` once, when the
run stops, for the run's whole window. Sources and their real dimension sets: :mod:`.sources`.

- **Identity.** A series belongs to this run's machine when one of its identity dimensions carries
  a wanted value: ``host`` *or* ``InstanceId`` for the agent (it publishes one or the other),
  ``InstanceId``/``NodeName`` for Container Insights, ``FullPodName``/``PodName`` per pod. Wanted
  values come from the options, else from this machine: the instance (IMDSv2, short timeout) and
  its hostname, the EKS node and pod from the pod's environment (:mod:`.identity`). Series with no
  identity at all (an agent in a container without ``append_dimensions``) are used when nothing
  better matches, with a note.
- **Discovery** (ListMetrics, roll-ups without a per-device dimension skipped) runs when the
  collector opens *and again when the run ends*: a new metric can take up to 15 minutes to be
  listed, so a run on a freshly booted instance still gets its data.
- **Late data.** The agent buffers up to 60 s before sending and CloudWatch needs a moment to
  ingest: by default the fetch polls (every ``poll_s``) until the run's end is covered or
  ``wait_s`` (120 s) after the run's end has passed, says so in a warning (the CLI's status line),
  and notes what is still missing.
- **Periods.** Each series is read at the period its readings come at (a cheap 60 s SampleCount
  probe tells the agent's interval; Container Insights is always 60 s): 1/5/10/20/30 s for
  high-resolution data, multiples of 60 s for standard-resolution data, never finer than the
  retention allows (:mod:`.query`). Calls stay within 500 queries and 100,800 points.
- **Power semantics.** Agents 1.300056.0 and newer publish the *instantaneous* reading as
  ``nvidia_smi_power_draw`` (``power_w``); older ones the 1 s average (``power_avg_w``), and
  with newer drivers no power at all. ``agent_version=`` or ``power=instant|average`` says which;
  a device without a power metric says so in its ``power_source`` and in the run's events.

Timing model: a datapoint's timestamp is the start of its period and its value is the average of
the readings in it, so each value is placed at the middle of its bucket; power between those
points is linear, and the run's edges get a value interpolated from the neighbouring points (held
for at most one reading interval). The energy of the run is the integral of that curve over the
run's window. Devices are ``cw:<InstanceId, host, NodeName or pod>/gpu:<index>``.

Throttling is retried with bounded exponential backoff; ``PartialData`` results are paged and
re-queried; what could not be read becomes a :class:`~wattprof.errors.CollectorError` (the
recorder turns it into an event) or a note in :attr:`CloudWatchCollector.notes` (recorded as
events after the fetch). boto3 is imported only when the collector is used (extra ``wattprof[aws]``).
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from ...clock import SYSTEM_CLOCK, Clock
from ...errors import CollectorError, InputError
from ..base import COLLECTOR_NOTE, RemoteCollector
from .aws import Retry, aws_available, error_text, is_throttle, make_client, redact_url
from .identity import ec2_identity, pod_identity
from .query import choose_period, plan_calls
from .sources import (
    MetricMap,
    PowerSemantics,
    SourceSpec,
    agent_power_semantics,
    device_part,
    machine_of,
    match,
)
from .sources import source as find_source

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 120.0  # the agent's 60 s buffer + ingestion + the last standard-resolution minute
DEFAULT_POLL_S = 15.0


@dataclass
class _Series:
    device: str
    metric: MetricMap
    dims: dict[str, str]
    column: str = ""
    times: list[float] = field(default_factory=list)  # bucket starts, Unix s
    values: list[float] = field(default_factory=list)
    interval_s: float | None = None  # how often the publisher writes (from the probe)
    high_resolution: bool = True
    period: int = 0


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


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _epoch(x: Any) -> float:
    if isinstance(x, datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=UTC)
        return x.timestamp()
    return float(x)


def _number(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"cloudwatch {name}={value!r}: expected a number of seconds") from None
    if not math.isfinite(x):
        raise InputError(f"cloudwatch {name}={value!r}: expected a finite number")
    return x


def _flag(value: Any) -> bool:
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


class CloudWatchCollector(RemoteCollector):
    """GPU metrics of the CloudWatch agent (or Container Insights) for the run's window.

    Options (all optional): ``source`` agent | container-insights | pod | neuron; ``namespace``;
    ``host`` (agent: the ``host`` dimension; Container Insights: ``NodeName``); ``instance_id``;
    ``cluster``; ``pod``, ``pod_namespace`` (source=pod); ``identity`` (auto: this machine from
    instance metadata and the pod's environment when no host/instance_id/pod is given; none: off);
    ``dimensions`` ("K=V;K=V", extra filters, or with ``discover=0`` the series' complete
    dimensions); ``indices`` ("0;1", with ``discover=0``); ``period`` (auto or seconds);
    ``all_hosts`` (allow series of several machines in one run); ``wait_s`` (how long after the
    run's end to wait for late data, default 120; 0: don't) and ``poll_s``; ``agent_version`` and
    ``power`` (auto | instant | average: what nvidia_smi_power_draw holds); ``region``,
    ``endpoint_url``, ``profile``; ``max_retries``, ``backoff_s``; ``client_factory`` (Python only:
    called like ``boto3.client``).
    """

    name = "cloudwatch"
    metrics = ("power_w", "power_avg_w", "util_pct", "mem_util_pct", "temp_c", "mem_used_bytes", "mem_total_bytes",
               "sm_clock_mhz", "mem_clock_mhz")

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, source: str = "agent", namespace: str | None = None,
                 host: str | None = None, instance_id: str | None = None, cluster: str | None = None,
                 pod: str | None = None, pod_namespace: str | None = None, identity: str = "auto",
                 dimensions: str | Mapping[str, Any] | None = None, discover: bool | int | str = True,
                 indices: str | int | None = None, period: int | str = "auto", all_hosts: bool | int | str = False,
                 wait_s: float = DEFAULT_WAIT_S, poll_s: float = DEFAULT_POLL_S, agent_version: str | None = None,
                 power: str = "auto", region: str | None = None, endpoint_url: str | None = None,
                 profile: str | None = None, max_retries: int = 5, backoff_s: float = 0.5,
                 client_factory: Callable[..., Any] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(clock=clock)
        spec = find_source(source)
        if spec is None:
            raise InputError(f"cloudwatch source {source!r}: expected one of agent, container-insights, pod, neuron")
        self.spec: SourceSpec = spec
        self.namespace = namespace or self.spec.namespace
        self.host = None if host is None else str(host)
        self.instance_id = None if instance_id is None else str(instance_id)
        self.cluster = None if cluster is None else str(cluster)
        self.pod = None if pod is None else str(pod)
        self.pod_namespace = None if pod_namespace is None else str(pod_namespace)
        if str(identity).lower() not in ("auto", "none"):
            raise InputError(f"cloudwatch identity {identity!r}: expected auto or none")
        self.identity = str(identity).lower()
        self.extra_dims = parse_dims(dimensions)
        self.discover = _flag(discover)
        self.indices = [s.strip() for s in str(indices).split(";") if s.strip()] if indices is not None else []
        if not self.discover and not self.indices and self.spec.device_dim not in self.extra_dims:
            raise InputError(f"cloudwatch discover=0 needs indices=0;1;... or dimensions naming {self.spec.device_dim}")
        self.period = period
        self.all_hosts = _flag(all_hosts)
        self.wait_s = _number("wait_s", wait_s)
        self.poll_s = _number("poll_s", poll_s)
        if self.wait_s < 0 or self.poll_s <= 0:
            raise InputError("cloudwatch wait_s must be >= 0 and poll_s > 0 (seconds)")
        self.agent_version = None if agent_version is None else str(agent_version)
        self.power = str(power).lower()
        if self.power not in ("auto", "instant", "instantaneous", "average", "avg", "averaged"):
            raise InputError(f"cloudwatch power {power!r}: expected auto, instant or average")
        self.power_semantics: PowerSemantics | None = (
            agent_power_semantics(self.agent_version, self.power) if self.spec.key == "agent" else None)
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.client_factory = client_factory
        self.retry = Retry(max_retries=int(_number("max_retries", max_retries)),
                           backoff_s=_number("backoff_s", backoff_s), sleep=sleep or time.sleep)
        self._client: Any = None
        self._series: list[_Series] = []
        self._devices: dict[str, dict[str, Any]] = {}
        self._auto: dict[str, str] | None = None  # identity found for this machine (instance metadata, pod env)
        #: Quality notes found while reading (partial data, missing metrics, late data ...).
        self.notes: list[str] = []
        self._open_notes: list[str] = []
        #: Device metadata completed by the last :meth:`fetch` (period actually used, notes); also
        #: queued as device updates, which the recorder merges into the run's devices.
        self.devices_after_fetch: dict[str, dict[str, Any]] = {}
        #: The period (s) of the last fetch's power data (the finest used).
        self.last_period: int | None = None
        #: Seconds the last fetch waited (on the collector's clock) for late data.
        self.waited_s: float = 0.0

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
        opts: dict[str, Any] = {"source": self.spec.key, "namespace": self.namespace, "period": self.period,
                                "wait_s": self.wait_s}
        for k in ("host", "instance_id", "cluster", "pod", "pod_namespace", "region", "profile", "agent_version"):
            if getattr(self, k):
                opts[k] = getattr(self, k)
        if self.power != "auto":
            opts["power"] = self.power
        if self.identity != "auto":
            opts["identity"] = self.identity
        if self.extra_dims:
            opts["dimensions"] = dict(self.extra_dims)
        if not self.discover:
            opts["discover"] = False
            opts["indices"] = list(self.indices)
        if self.endpoint_url:
            opts["endpoint_url"] = redact_url(self.endpoint_url)
        return opts

    def open(self) -> dict[str, dict]:
        """Find the series. Nothing listed yet is not an error here: a new metric can take up to 15
        minutes to be listed, so discovery runs again when the run ends."""
        self.notes = []
        if self.discover:
            try:
                self._series = self._discover_series()
            except _NothingListed as e:
                self._series = []
                self.notes.append(f"{e} Discovering again when the run ends.")
                log.warning("cloudwatch: %s (discovering again when the run ends)", e)
        else:
            self._series = self._explicit_series()
        self._open_notes = list(self.notes)
        self._devices = self._device_info(periods=None)
        return {d: dict(info) for d, info in self._devices.items()}

    def fetch(self, t0: float, t1: float) -> list[dict[str, Any]]:
        if t1 <= t0:
            raise CollectorError(f"cloudwatch: empty window ({t0} .. {t1})")
        self.notes = [n for n in self._open_notes if "Discovering again" not in n]
        self.waited_s = 0.0
        start_wait = self.clock.time()
        deadline = t1 + self.wait_s
        # bounded even on a clock that does not move (the wait is measured on the collector's clock)
        span = min(max(0.0, deadline - start_wait), self.wait_s + 600.0)
        max_polls = int(math.ceil(span / self.poll_s)) + 1 if self.wait_s > 0 else 1
        nothing: _NothingListed | None = None
        said = False
        for poll in range(max_polls):
            nothing = None
            if self.discover:
                try:
                    self._series = self._merge_series(self._discover_series())
                except _NothingListed as e:
                    nothing = e
            if self._series:
                self._read(t0, t1)
            covered = nothing is None and bool(self._series) and not self._tail_missing(t1)
            now = self.clock.time()
            if covered or now >= deadline or poll == max_polls - 1:
                break
            if not said:
                said = True
                msg = (f"waiting up to {deadline - now:.0f} s for CloudWatch to have the run's last data (the agent "
                       f"buffers up to 60 s; wait_s={self.wait_s:g}, 0 to skip)")
                log.warning("cloudwatch: %s", msg)
            self.clock.sleep(min(self.poll_s, max(0.0, deadline - now)))
        self.waited_s = max(0.0, self.clock.time() - start_wait)
        if said:
            self.notes.append(f"waited {self.waited_s:.0f} s after the run for late data")
        if nothing is not None and not self._series:
            self._failed(f"{nothing} (also at the run's end"
                         f"{f', after waiting {self.waited_s:.0f} s' if self.waited_s else ''})")
        rows, effective = self._rows(t0, t1)
        if not rows:
            self._failed(
                f"cloudwatch: no datapoints for {len(self._series)} series in namespace {self.namespace} between "
                f"{_ts(t0).isoformat()} and {_ts(t1).isoformat()}"
                f"{f' (waited {self.waited_s:.0f} s)' if self.waited_s else ''}: the agent publishes with a delay "
                "(force_flush_interval, 60 s by default); fetch again later or raise wait_s")
        self.notes = list(dict.fromkeys(self.notes))  # each discovery pass notes the same things again
        power_periods = [s.period for s in self._series if s.metric.metric == self.spec.power_metric and s.period]
        self.last_period = min(power_periods or [s.period for s in self._series if s.period] or [0]) or None
        self.devices_after_fetch = self._device_info(periods=effective)
        for dev, info in self.devices_after_fetch.items():
            self.update_device(dev, info)
        self._emit_notes()
        return rows

    def _failed(self, message: str) -> NoReturn:
        """The fetch read nothing: the devices announced at open say so (their power source no longer
        promises a period), the notes so far are kept, and :class:`CollectorError` is raised."""
        for dev, info in self._devices.items():
            if str(info.get("power_source") or "").startswith("measured"):
                self.update_device(dev, {"power_source": "none: nothing was read back from CloudWatch for the run "
                                                         "(see the run's events)"})
        self.notes = list(dict.fromkeys(self.notes))
        self._emit_notes()
        raise CollectorError(message)

    def _emit_notes(self) -> None:
        """The notes of this fetch as events (``collector_note``), each tied to its device when it
        names one, so the run and its report say what data was late, partial or missing."""
        devices = set(self._devices) | set(self.devices_after_fetch)
        for n in self.notes:
            log.warning("cloudwatch: %s", n)
            dev = n.split(": ", 1)[0]
            self.emit(COLLECTOR_NOTE, n, device=dev if dev in devices else None)

    def close(self) -> None:
        self._client = None

    # ---- identity and discovery --------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(region=self.region, endpoint_url=self.endpoint_url, profile=self.profile,
                                       client_factory=self.client_factory)
        return self._client

    def _required(self) -> dict[str, str]:
        """Dimensions a series must carry with exactly these values."""
        req = dict(self.extra_dims)
        if self.cluster:
            req["ClusterName"] = self.cluster
        if self.spec.key == "pod":
            ns = self.pod_namespace or (self._auto or {}).get("Namespace")
            if ns:
                req["Namespace"] = ns
        return req

    def _explicit_identity(self) -> dict[str, str]:
        if self.spec.key == "pod":
            return {"FullPodName": self.pod, "PodName": self.pod} if self.pod else {}
        out: dict[str, str] = {}
        if self.instance_id:
            out["InstanceId"] = self.instance_id
        if self.host:
            out["host" if self.spec.key == "agent" else "NodeName"] = self.host
        return out

    def _auto_identity(self) -> dict[str, str]:
        """This machine (or pod), when no identity option is given: instance metadata, hostname, pod env."""
        if self._auto is not None:
            return self._auto
        auto: dict[str, str] = {}
        if self.identity == "auto":
            pod = pod_identity()
            if self.spec.key == "pod":
                if pod.pod_name:
                    auto.update({"FullPodName": pod.pod_name, "PodName": pod.pod_name})
                if pod.namespace:
                    auto["Namespace"] = pod.namespace
            else:
                ident = ec2_identity()
                if ident is not None:
                    auto["InstanceId"] = ident.instance_id
                if self.spec.key == "agent":
                    auto["host"] = (ident.local_hostname if ident and ident.local_hostname else None) or \
                        socket.gethostname()
                elif pod.node_name:
                    auto["NodeName"] = pod.node_name
        self._auto = auto
        return auto

    def _list(self, mm: MetricMap, required: Mapping[str, str]) -> list[dict[str, str]]:
        kwargs: dict[str, Any] = {"Namespace": self.namespace, "MetricName": mm.metric}
        if required:
            kwargs["Dimensions"] = [{"Name": k, "Value": v} for k, v in required.items()]
        if self.clock.time() > time.time() - 3 * 3600:  # a live run: only recently active metrics
            kwargs["RecentlyActive"] = "PT3H"

        def listing() -> list[dict[str, Any]]:
            return [m for page in self.retry.pages(self.client, "list_metrics", **kwargs)
                    for m in page.get("Metrics", [])]

        seen: set[tuple] = set()
        out = []
        for m in self._aws("ListMetrics", listing):
            dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
            key = tuple(sorted(dims.items()))
            if key not in seen:  # moto lists a metric once per datapoint
                seen.add(key)
                out.append(dims)
        return out

    def _discover_series(self) -> list[_Series]:
        explicit = self._explicit_identity()
        auto = {} if explicit and self.spec.key != "pod" else self._auto_identity()
        required = self._required()  # after the auto identity: a pod's namespace comes from there
        wanted = explicit or {k: v for k, v in auto.items() if k in self.spec.identity_dims}
        listed: list[tuple[MetricMap, dict[str, str]]] = []
        for mm in self.spec.metrics:
            listed += [(mm, d) for d in self._list(mm, required) if self.spec.device_dim in d]  # roll-ups skipped
        verdicts = [(mm, d, match(d, self.spec, wanted, required)) for mm, d in listed]
        chosen = [(mm, d) for mm, d, v in verdicts if v == "yes"]
        where = f"namespace {self.namespace}" + (f" with {_fmt_dims(required)}" if required else "")
        if not chosen and wanted and not explicit:
            # this machine publishes nothing under its own name: treat it like no identity at all
            chosen = [(mm, d) for mm, d in listed if match(d, self.spec, {}, required) == "yes"]
            if chosen:
                self.notes.append(f"no series name this machine ({_fmt_dims(wanted)}): using the series in {where}")
                wanted = {}
        if not chosen:
            anonymous = [(mm, d) for mm, d, v in verdicts if v == "anonymous"]
            if anonymous:
                chosen = anonymous
                self.notes.append(
                    f"the series in {where} carry no {' or '.join(self.spec.identity_dims)} dimension (an agent in a "
                    "container without append_dimensions): assumed to be this machine's GPUs")
        if not chosen:
            seen_ids = sorted({k for _, d in listed for k in self.spec.identity_dims if d.get(k)})
            hint = ""
            if listed and wanted:
                others = [k for k in seen_ids if k not in wanted]
                hint = (f" The series there are named by {', '.join(seen_ids) or 'no identity'}"
                        + (f": filter with {_option_for(others[0], self.spec)}=..." if others else "") + ".")
            raise _NothingListed(
                f"cloudwatch: no {self.spec.label} metrics ({', '.join(m.metric for m in self.spec.metrics[:2])}, ...) "
                f"per {self.spec.device_dim} in {where}"
                f"{f' for {_fmt_dims(wanted)}' if wanted else ''}"
                f"{f' (region {self.region})' if self.region else ''}.{hint} Is the publisher sending them to this "
                "region? New metrics can take up to 15 minutes to be listed.")
        fallback = next((v for v in wanted.values() if v), None) if wanted else None
        series: dict[tuple[str, str], _Series] = {}
        for mm, dims in chosen:
            dev = self._device_id(dims, fallback)
            old = series.get((dev, mm.metric))
            if old is None or len(dims) > len(old.dims):
                series[(dev, mm.metric)] = _Series(dev, mm, dims, self._column(mm))  # the most specific set
        out = list(series.values())
        machines = sorted({s.device.split("/", 1)[0] for s in out})
        if len(machines) > 1 and not (wanted or required or self.all_hosts):
            raise CollectorError(
                f"cloudwatch: {len(machines)} machines publish {self.spec.label} metrics in {where} "
                f"({', '.join(m[3:] for m in machines[:5])}{', ...' if len(machines) > 5 else ''}): choose one with "
                "instance_id=... or host=..., or pass all_hosts=1 to sum them all")
        if self.spec.power_metric:
            powered = {s.device for s in out if s.metric.metric == self.spec.power_metric}
            for dev in sorted({s.device for s in out} - powered):
                self.notes.append(f"{dev}: no {self.spec.power_metric} metric in {where}: no energy for it"
                                  + (" (agents before 1.300056.0 publish no power with drivers that report instant "
                                     "and average power separately; is power_draw in the nvidia_gpu measurement "
                                     "list?)" if self.spec.key == "agent" else ""))
        if self.power_semantics and self.power_semantics.note and any(
                s.metric.metric == self.spec.power_metric for s in out):
            self.notes.append(self.power_semantics.note)
        return sorted(out, key=lambda s: (s.device, s.metric.metric))

    def _merge_series(self, found: list[_Series]) -> list[_Series]:
        """Newly discovered series join the known ones (data already read is kept)."""
        known = {(s.device, s.metric.metric): s for s in self._series}
        for s in found:
            known.setdefault((s.device, s.metric.metric), s)
        return sorted(known.values(), key=lambda s: (s.device, s.metric.metric))

    def _explicit_series(self) -> list[_Series]:
        ident = {k: v for k, v in self._explicit_identity().items() if k not in self.extra_dims}
        if self.spec.key != "pod" and len(ident) > 1 and not any(d in self.extra_dims for d in self.spec.identity_dims):
            raise InputError(f"cloudwatch discover=0: give one of {' or '.join(self.spec.identity_dims)} (a series "
                             "carries one of them, never both: InstanceId when the agent appends EC2 dimensions, "
                             "host otherwise)")
        if any(d in self.extra_dims for d in self.spec.identity_dims):
            ident = {}  # the given dimensions already name the machine
        base = {**ident, **self._required()}  # then the given dimensions, in their order
        base = {k: v for k, v in base.items() if k != "PodName" or "FullPodName" not in base}
        base.update(self.extra_dims)
        dim_sets = ([{self.spec.device_dim: i, **{k: v for k, v in base.items() if k != self.spec.device_dim}}
                     for i in self.indices] if self.indices else [base])
        return [_Series(self._device_id(d), mm, d, self._column(mm)) for d in dim_sets for mm in self.spec.metrics]

    def _column(self, mm: MetricMap) -> str:
        if self.power_semantics is not None and mm.metric == self.spec.power_metric:
            return self.power_semantics.column
        return mm.column

    def _device_id(self, dims: Mapping[str, str], fallback: str | None = None) -> str:
        machine = machine_of(dims, self.spec)
        if machine == "unidentified" and fallback:
            machine = machine_of({self.spec.identity_dims[0]: fallback}, self.spec)
        return f"cw:{machine}/{self.spec.kind}:{device_part(dims[self.spec.device_dim])}"

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

    def _device_info(self, *, periods: Mapping[str, int] | None) -> dict[str, dict]:
        out: dict[str, dict[str, Any]] = {}
        for s in self._series:
            info = out.setdefault(s.device, {
                "kind": self.spec.kind, "name": s.dims.get("name") or s.dims.get("InstanceType"),
                "collector": self.name, "namespace": self.namespace, "dimensions": dict(s.dims),
                "host": s.dims.get("host") or s.dims.get("NodeName"), "instance_id": s.dims.get("InstanceId"),
                "index": s.dims.get(self.spec.device_dim), "power_source": None,
            })
            if s.dims.get("PodName"):
                info.update(pod=s.dims.get("FullPodName") or s.dims["PodName"], pod_namespace=s.dims.get("Namespace"))
            if s.metric.metric == self.spec.power_metric:
                p = (periods or {}).get(s.device)
                when = f"period {p} s" if p else "period chosen when the run stops"
                what = f", {self.power_semantics.description}" if self.power_semantics else ""
                info["power_source"] = (f"measured: {self.spec.label} {self.spec.power_metric} "
                                        f"({when}, statistic Average{what})")
                if len(s.dims) > len(info["dimensions"]):
                    info["dimensions"] = dict(s.dims)
        for dev, info in out.items():
            if info["power_source"] is None:
                info["power_source"] = (f"none: {self.spec.label} publishes no {self.spec.power_metric} for this "
                                        "device" if self.spec.power_metric else
                                        f"none: {self.spec.label} publishes no power for this device")
            dev_notes = [n for n in self.notes if n.startswith(dev + ":")]
            if dev_notes:
                info["notes"] = dev_notes
        return out

    # ---- data --------------------------------------------------------------------------------------
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
        groups: dict[int, list[_Series]] = {}
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

    def _query(self, series: list[_Series], start: float, end: float, period: int, stat: str, *,
               keep: bool = True) -> dict[int, list[float]]:
        """Read ``stat`` of every series for [start, end) (into the series when ``keep``; the values
        by ``id(series)`` otherwise), within the per-call limits, re-querying PartialData."""
        got: dict[int, tuple[list[float], list[float]]] = {id(s): ([], []) for s in series}
        todo = [(s, start) for s in series]
        for attempt in range(3):  # PartialData left after paging: re-query from the last point
            partial: list[tuple[_Series, float]] = []
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

    def _call(self, group: list[_Series], st: float, end: float, period: int, stat: str,
              got: dict[int, tuple[list[float], list[float]]]) -> list[tuple[_Series, float]]:
        queries = [{"Id": f"q{j}", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self.namespace, "MetricName": s.metric.metric,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in s.dims.items()]},
            "Period": period, "Stat": stat}} for j, s in enumerate(group)]
        status: dict[str, str] = {}

        def run() -> None:
            for page in self.retry.pages(self.client, "get_metric_data", MetricDataQueries=queries,
                                         StartTime=_ts(st), EndTime=_ts(end), ScanBy="TimestampAscending"):
                for msg in page.get("Messages") or []:
                    self.notes.append(f"GetMetricData: {msg.get('Code')}: {msg.get('Value')}")
                for r in page.get("MetricDataResults", []):
                    s = group[int(r["Id"][1:])]
                    times, values = got[id(s)]
                    times.extend(_epoch(x) for x in r.get("Timestamps", []))
                    values.extend(float(v) for v in r.get("Values", []))
                    status[r["Id"]] = r.get("StatusCode", "Complete")
                    for msg in r.get("Messages") or []:
                        self.notes.append(f"{s.device}: {s.metric.metric}: {msg.get('Code')}: {msg.get('Value')}")

        self._aws("GetMetricData", run)
        partial: list[tuple[_Series, float]] = []
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

    def _tail_missing(self, t1: float) -> bool:
        power = [s for s in self._series if s.metric.metric == self.spec.power_metric] or self._series
        return any(not s.times or max(s.times) + 2 * max(s.period, _spacing(sorted(s.times), s.period)) < t1
                   for s in power)

    def _rows(self, t0: float, t1: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Samples for [t0, t1]: values at bucket middles, interpolated edge values at t0 and t1."""
        by_dev: dict[str, dict[float, dict[str, Any]]] = {}
        effective: dict[str, int] = {}
        for s in self._series:
            if not s.times:
                continue
            pairs = sorted({t: v for t, v in zip(s.times, s.values, strict=False)}.items())
            tb = [t for t, _ in pairs]
            vals = [v * s.metric.scale for _, v in pairs]
            bucket = s.period
            if s.metric.metric == self.spec.power_metric or s.device not in effective:
                effective[s.device] = bucket
            tp = [t + bucket / 2.0 for t in tb]
            hold = max(bucket, _spacing(tp, bucket))
            rows = by_dev.setdefault(s.device, {})
            for t, v in zip(tp, vals, strict=True):
                if t0 < t < t1:
                    rows.setdefault(t, {})[s.column] = v
            for edge in (t0, t1):
                v = _edge_value(tp, vals, edge, hold)
                if v is not None:
                    rows.setdefault(edge, {})[s.column] = v
            first, last = tp[0], tp[-1]
            if s.metric.metric == self.spec.power_metric:
                if first - t0 > hold:
                    self.notes.append(f"{s.device}: {s.metric.metric}: no data for the first {first - t0:.0f} s "
                                      "of the run")
                if t1 - last > hold:
                    self.notes.append(f"{s.device}: {s.metric.metric}: no data for the last {t1 - last:.0f} s of "
                                      f"the run (still missing after waiting {self.waited_s:.0f} s; the agent "
                                      "flushes every 60 s by default: fetch again later, or raise wait_s)")
                gaps = [b - a for a, b in zip(tp, tp[1:], strict=False) if t0 <= a and b <= t1 and b - a > 3 * hold]
                if gaps:
                    self.notes.append(f"{s.device}: {s.metric.metric}: {len(gaps)} gap(s) in the data (longest "
                                      f"{max(gaps):.0f} s), bridged linearly")
        out: list[dict[str, Any]] = []
        for dev in sorted(by_dev):
            for t in sorted(by_dev[dev]):
                out.append({"t": t, "device": dev, **by_dev[dev][t]})
        return out, effective


class _NothingListed(CollectorError):
    """Discovery found no series (yet)."""


def _option_for(dim: str, spec: SourceSpec) -> str:
    return {"InstanceId": "instance_id", "host": "host", "NodeName": "host", "FullPodName": "pod",
            "PodName": "pod"}.get(dim, f"dimensions={dim}")


def _fmt_dims(d: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


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

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
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ...clock import SYSTEM_CLOCK, Clock
from ...errors import CollectorError, InputError
from ..base import COLLECTOR_NOTE, RemoteCollector
from .aws import Retry, aws_available, make_client, redact_url
from .buckets import Series, tail_missing, window_rows
from .discovery import NothingListed, SeriesDiscovery
from .metric_data import MetricDataReader, ts
from .options import CloudWatchOptions
from .sources import (
    PowerSemantics,
    SourceSpec,
    agent_power_semantics,
)
from .sources import source as find_source

log = logging.getLogger(__name__)

class CloudWatchCollector(SeriesDiscovery, MetricDataReader, RemoteCollector):
    """GPU metrics of the CloudWatch agent (or Container Insights) for the run's window.

    Its options are a :class:`CloudWatchOptions` (``options``, or the same names as keywords, as a
    collector spec gives them); ``client_factory`` (Python only: called like ``boto3.client``) and
    ``sleep`` replace the AWS client and the retry wait (tests).
    """

    name = "cloudwatch"
    metrics = ("power_w", "power_avg_w", "util_pct", "mem_util_pct", "temp_c", "mem_used_bytes", "mem_total_bytes",
               "sm_clock_mhz", "mem_clock_mhz")

    options_class = CloudWatchOptions

    def __init__(self, options: CloudWatchOptions | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 client_factory: Callable[..., Any] | None = None, sleep: Callable[[float], None] | None = None,
                 **fields: Any) -> None:
        super().__init__(clock=clock)
        if options is not None and fields:
            raise TypeError("give CloudWatchCollector either options or keyword fields, not both")
        o = (options if options is not None else CloudWatchOptions(**fields)).checked()
        self.config = o
        spec = find_source(o.source)
        if spec is None:
            raise InputError(f"cloudwatch source {o.source!r}: expected one of agent, container-insights, pod, neuron")
        self.spec: SourceSpec = spec
        self.namespace = o.namespace or self.spec.namespace
        self.host, self.instance_id, self.cluster = o.host, o.instance_id, o.cluster
        self.pod, self.pod_namespace, self.identity = o.pod, o.pod_namespace, o.identity
        self.extra_dims = dict(o.dimensions)
        self.discover, self.indices = o.discover, list(o.indices)
        if not self.discover and not self.indices and self.spec.device_dim not in self.extra_dims:
            raise InputError(f"cloudwatch discover=0 needs indices=0;1;... or dimensions naming {self.spec.device_dim}")
        self.period, self.all_hosts, self.wait_s, self.poll_s = o.period, o.all_hosts, o.wait_s, o.poll_s
        self.agent_version, self.power = o.agent_version, o.power
        self.power_semantics: PowerSemantics | None = (
            agent_power_semantics(self.agent_version, self.power) if self.spec.key == "agent" else None)
        self.region, self.endpoint_url, self.profile = o.region, o.endpoint_url, o.profile
        self.client_factory = client_factory
        self.retry = Retry(max_retries=o.max_retries, backoff_s=o.backoff_s, sleep=sleep or time.sleep)
        self._client: Any = None
        self._series: list[Series] = []
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
            except NothingListed as e:
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
        nothing: NothingListed | None = None
        said = False
        for poll in range(max_polls):
            nothing = None
            if self.discover:
                try:
                    self._series = self._merge_series(self._discover_series())
                except NothingListed as e:
                    nothing = e
            if self._series:
                self._read(t0, t1)
            covered = nothing is None and bool(self._series) and not tail_missing(self._series, self.spec.power_metric, t1)
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
        rows, effective = window_rows(self._series, t0, t1, power_metric=self.spec.power_metric,
                                      waited_s=self.waited_s, notes=self.notes)
        if not rows:
            self._failed(
                f"cloudwatch: no datapoints for {len(self._series)} series in namespace {self.namespace} between "
                f"{ts(t0).isoformat()} and {ts(t1).isoformat()}"
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

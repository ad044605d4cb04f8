"""Which CloudWatch series are this run's: the identity wanted (options, else this machine from
instance metadata, its hostname and the pod's environment), ListMetrics (roll-ups without a
per-device dimension skipped), the match of each series' dimensions, or the series named
explicitly (``discover=0``). A mixin of :class:`~.collector.CloudWatchCollector`."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ...clock import Clock
from ...errors import CollectorError, InputError
from .aws import Retry
from .buckets import Series
from .identity import ec2_identity, pod_identity
from .sources import MetricMap, PowerSemantics, SourceSpec, device_part, machine_of, match


class NothingListed(CollectorError):
    """Discovery found no series (yet)."""


class SeriesDiscovery:
    """Finding the series (see the module docstring); the options are the collector's."""

    clock: Clock
    spec: SourceSpec
    namespace: str
    host: str | None
    instance_id: str | None
    cluster: str | None
    pod: str | None
    pod_namespace: str | None
    identity: str
    extra_dims: dict[str, str]
    indices: list[str]
    all_hosts: bool
    region: str | None
    power_semantics: PowerSemantics | None
    retry: Retry
    notes: list[str]
    _series: list[Series]
    _auto: dict[str, str] | None

    if TYPE_CHECKING:  # the collector's (and MetricDataReader's)
        @property
        def client(self) -> Any: ...

        def _aws(self, what: str, fn: Callable[[], Any]) -> Any: ...

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

    def _discover_series(self) -> list[Series]:
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
            raise NothingListed(
                f"cloudwatch: no {self.spec.label} metrics ({', '.join(m.metric for m in self.spec.metrics[:2])}, ...) "
                f"per {self.spec.device_dim} in {where}"
                f"{f' for {_fmt_dims(wanted)}' if wanted else ''}"
                f"{f' (region {self.region})' if self.region else ''}.{hint} Is the publisher sending them to this "
                "region? New metrics can take up to 15 minutes to be listed.")
        fallback = next((v for v in wanted.values() if v), None) if wanted else None
        series: dict[tuple[str, str], Series] = {}
        for mm, dims in chosen:
            dev = self._device_id(dims, fallback)
            old = series.get((dev, mm.metric))
            if old is None or len(dims) > len(old.dims):
                series[(dev, mm.metric)] = Series(dev, mm, dims, self._column(mm))  # the most specific set
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

    def _merge_series(self, found: list[Series]) -> list[Series]:
        """Newly discovered series join the known ones (data already read is kept)."""
        known = {(s.device, s.metric.metric): s for s in self._series}
        for s in found:
            known.setdefault((s.device, s.metric.metric), s)
        return sorted(known.values(), key=lambda s: (s.device, s.metric.metric))

    def _explicit_series(self) -> list[Series]:
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
        return [Series(self._device_id(d), mm, d, self._column(mm)) for d in dim_sets for mm in self.spec.metrics]

    def _column(self, mm: MetricMap) -> str:
        if self.power_semantics is not None and mm.metric == self.spec.power_metric:
            return self.power_semantics.column
        return mm.column

    def _device_id(self, dims: Mapping[str, str], fallback: str | None = None) -> str:
        machine = machine_of(dims, self.spec)
        if machine == "unidentified" and fallback:
            machine = machine_of({self.spec.identity_dims[0]: fallback}, self.spec)
        return f"cw:{machine}/{self.spec.kind}:{device_part(dims[self.spec.device_dim])}"


def _option_for(dim: str, spec: SourceSpec) -> str:
    return {"InstanceId": "instance_id", "host": "host", "NodeName": "host", "FullPodName": "pod",
            "PodName": "pod"}.get(dim, f"dimensions={dim}")


def _fmt_dims(d: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())



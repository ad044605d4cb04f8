"""Prometheus: a run's results as a node_exporter textfile, and a live ``/metrics`` endpoint.

Names follow Prometheus conventions (REFERENCE.md, "Integrations"): prefix ``wattprof_``, base
units, a joules counter ``..._energy_joules_total`` plus a watts gauge.

Textfile (:func:`write_textfile`, for node_exporter's ``--collector.textfile.directory``), every
series labelled ``run`` (the run's *name*: one continuous series across nightly runs):

- ``wattprof_run_info{run,id,status,boundary,energy_source} 1``
- ``wattprof_run_energy_joules{run}``: the run's energy (its report boundary, e.g. GPUs only)
- ``wattprof_run_duration_seconds{run}``, ``wattprof_run_end_timestamp_seconds{run}``
- ``wattprof_energy_joules_total{run,device,source}``: per device (``source``: counter,
  instant_power, averaged_power or estimate)
- ``wattprof_power_watts{run,device}``: mean power per device over the run
- ``wattprof_tokens_total{run}``, ``wattprof_run_energy_per_token_joules{run}``
- ``wattprof_label_energy_joules{run,label}``, ``wattprof_energy_per_token_joules{run,label}``
- ``wattprof_co2e_grams{run}`` (when the report has a carbon figure)

Live endpoint (:class:`LiveMetricsServer`, ``wattprof record --metrics-port``), per device:
``wattprof_energy_joules_total{device,source}`` (energy since the endpoint started watching:
counter deltas, else integrated power), ``wattprof_power_watts{device}`` (latest reading),
``wattprof_sample_timestamp_seconds{device}``, and ``wattprof_tokens_total`` when a token count is
given; with a ``prometheus`` collector, ``wattprof_serve_tokens_per_second{device,kind}`` and
``wattprof_serve_energy_per_output_token_joules{device}``. It binds to 127.0.0.1 unless told otherwise.

Labels never carry anything but run names/ids, device ids, step labels and run tags named in an
explicit allow-list (``tags``): no environment, no credentials. prometheus_client is imported only
when used (extra ``wattprof[prometheus]``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, WattprofError

if TYPE_CHECKING:
    from ..reports.model import Report

log = logging.getLogger(__name__)

PREFIX = "wattprof_"
_LABEL_OK = re.compile(r"[^a-zA-Z0-9_]")
RESERVED_LABELS = frozenset({"run", "id", "device", "label", "source", "status", "boundary", "energy_source"})


def _prometheus() -> Any:
    try:
        import prometheus_client  # noqa: F401
        from prometheus_client import core
    except ImportError:
        raise WattprofError("prometheus_client is not installed (pip install 'wattprof[prometheus]')") from None
    return core


def label_name(key: str) -> str:
    """A run tag key as a Prometheus label name."""
    name = _LABEL_OK.sub("_", str(key))
    if not name or name[0].isdigit():
        name = "_" + name
    if name.startswith("__"):
        name = "tag" + name
    return name


def _extra_labels(report: Report, tags: Sequence[str], labels: Mapping[str, str] | None) -> dict[str, str]:
    run_tags = report.run.get("tags") or {}
    out: dict[str, str] = {}
    for key in tags:
        value = run_tags.get(key)
        if value is not None and str(value) != "":
            out[label_name(key)] = str(value)
    for k, v in (labels or {}).items():
        out[label_name(k)] = str(v)
    clash = sorted(set(out) & RESERVED_LABELS)
    if clash:
        raise InputError(f"label(s) {', '.join(clash)} are wattprof's own: rename the tag or label")
    return out


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x))


class ReportCollector:
    """A prometheus_client collector exposing one report (see the module docstring)."""

    def __init__(self, report: Report, *, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None) -> None:
        self.report = report
        self.extra = _extra_labels(report, tags, labels)

    def collect(self) -> Iterator[Any]:
        core = _prometheus()
        r = self.report
        run = str(r.run.get("name") or "run")
        ek, ev = list(self.extra), list(self.extra.values())

        def fam(kind: str, name: str, doc: str, labels: Sequence[str] = ()) -> Any:
            cls = {"gauge": core.GaugeMetricFamily, "counter": core.CounterMetricFamily}[kind]
            return cls(PREFIX + name, doc, labels=["run", *labels, *ek])

        info = fam("gauge", "run_info", "The run: id, status, energy boundary and source (value 1)",
                   ["id", "status", "boundary", "energy_source"])
        info.add_metric([run, str(r.run.get("id") or ""), str(r.run.get("status") or ""), r.boundary,
                         r.energy_source, *ev], 1.0)
        yield info
        g = fam("gauge", "run_energy_joules", "Energy of the run within its report boundary (joules)")
        if r.energy_j is not None:  # nothing measured: no sample, never a 0
            g.add_metric([run, *ev], r.energy_j)
        yield g
        g = fam("gauge", "run_duration_seconds", "Duration covered by the run's samples (seconds)")
        g.add_metric([run, *ev], r.duration_s)
        yield g
        end = r.run.get("ended_at")
        if _ok(end):
            g = fam("gauge", "run_end_timestamp_seconds", "When the run ended (Unix seconds)")
            g.add_metric([run, *ev], float(end))
            yield g
        c = fam("counter", "energy_joules", "Energy per device over the run (joules)", ["device", "source"])
        p = fam("gauge", "power_watts", "Mean power per device over the run (watts)", ["device"])
        for d in r.devices:
            if d.energy_source == "none":
                continue
            c.add_metric([run, d.device, d.energy_source, *ev], d.energy_j)
            if _ok(d.mean_power_w):
                p.add_metric([run, d.device, *ev], float(d.mean_power_w))
        yield c
        yield p
        if _ok(r.tokens):
            c = fam("counter", "tokens", "Tokens processed in the run")
            c.add_metric([run, *ev], float(r.tokens))
            yield c
        if _ok(r.j_per_token):
            g = fam("gauge", "run_energy_per_token_joules", "Energy per token over the run's labelled steps (joules)")
            g.add_metric([run, *ev], float(r.j_per_token))
            yield g
        le = fam("gauge", "label_energy_joules", "Energy per step label, between-step time included (joules)",
                 ["label"])
        lt = fam("gauge", "energy_per_token_joules", "Energy per token per step label (joules)", ["label"])
        for label, lr in r.by_label.items():
            if lr.energy_j is not None:
                le.add_metric([run, label, *ev], lr.energy_j)
            if _ok(lr.j_per_token):
                lt.add_metric([run, label, *ev], float(lr.j_per_token))
        yield le
        yield lt
        if r.carbon is not None:
            g = fam("gauge", "co2e_grams", f"CO2-equivalent of the run ({r.carbon.basis}, {r.carbon.location}, "
                    f"PUE {r.carbon.pue:g}; grams)")
            g.add_metric([run, *ev], r.carbon.g_co2e)
            yield g


def render_textfile(report: Report, *, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None) -> str:
    """The Prometheus text exposition of ``report`` (what :func:`write_textfile` writes)."""
    _prometheus()
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report, tags=tags, labels=labels))  # type: ignore[arg-type]
    return generate_latest(registry).decode("utf-8")


def write_textfile(report: Report, path: str | os.PathLike[str], *, tags: Sequence[str] = (),
                   labels: Mapping[str, str] | None = None) -> Path:
    """Write ``report`` for node_exporter's textfile collector, atomically: a temporary file in the
    same directory (a hidden name node_exporter ignores), fsync, rename. node_exporter reads only
    ``*.prom`` files. Returns the path written."""
    target = Path(path)
    text = render_textfile(report, tags=tags, labels=labels)
    if target.suffix != ".prom":
        log.warning("%s: node_exporter's textfile collector reads only *.prom files", target)
    if not target.parent.is_dir():
        raise InputError(f"{target.parent}: no such directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # readable by node_exporter like any file the user writes
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


# ---- live endpoint ----------------------------------------------------------------------------------

#: ``snapshot()`` returns the latest sample per device: ``{device: {"t": ..., "energy_j": ...,
#: "power_w": ..., ...}}``; the recorder's ``LiveStats.last`` has exactly this shape.
Snapshot = Callable[[], Mapping[str, Mapping[str, Any]]]
#: ``tokens()`` returns the tokens counted so far, or None.
Tokens = Callable[[], float | None]

_POWER_COLUMNS = (("power_w", "instant_power"), ("power_avg_w", "averaged_power"), ("power_est_w", "estimate"))


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class _DeviceEnergy:
    source: str
    energy_j: float = 0.0
    last_t: float | None = None
    last_counter: float | None = None
    last_power: float | None = None
    power_w: float | None = None


class LiveEnergy:
    """Energy per device accumulated from successive latest samples: counter deltas (a counter that
    goes backwards restarts the delta) or, without a counter, trapezoids of power between sample
    times. Observing the same sample twice adds nothing."""

    def __init__(self) -> None:
        self.devices: dict[str, _DeviceEnergy] = {}
        self._lock = threading.Lock()

    def observe(self, snapshot: Mapping[str, Mapping[str, Any]]) -> None:
        with self._lock:
            for device, sample in snapshot.items():
                self._observe(str(device), sample)

    def _observe(self, device: str, s: Mapping[str, Any]) -> None:
        t = _num(s.get("t"))
        counter = _num(s.get("energy_j"))
        power, psource = next(((v, src) for col, src in _POWER_COLUMNS if (v := _num(s.get(col))) is not None),
                              (None, None))
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = _DeviceEnergy(source="counter" if counter is not None else (psource or "none"))
        if t is not None and d.last_t is not None and t <= d.last_t:
            return  # already seen
        if power is not None:
            d.power_w = power
        if counter is not None:
            if d.last_counter is not None:
                d.energy_j += max(0.0, counter - d.last_counter)  # negative: counter reset, start again
            d.last_counter = counter
            d.source = "counter"
        elif power is not None and t is not None:
            if d.last_power is not None and d.last_t is not None:
                d.energy_j += (t - d.last_t) * (power + d.last_power) / 2.0
            if d.source != "counter":
                d.source = psource or d.source
        d.last_power = power
        if t is not None:
            d.last_t = t

    def state(self) -> dict[str, _DeviceEnergy]:
        with self._lock:
            return {k: _DeviceEnergy(**vars(v)) for k, v in self.devices.items()}


class _LiveCollector:
    def __init__(self, server: LiveMetricsServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        core = _prometheus()
        srv = self.server
        srv.poll()
        state = srv.energy.state()
        e = core.CounterMetricFamily(PREFIX + "energy_joules", "Energy per device since the endpoint started "
                                     "watching the run (joules)", labels=["device", "source"])
        p = core.GaugeMetricFamily(PREFIX + "power_watts", "Latest power reading per device (watts)", labels=["device"])
        ts = core.GaugeMetricFamily(PREFIX + "sample_timestamp_seconds", "Time of the latest sample per device "
                                    "(Unix seconds)", labels=["device"])
        for dev in sorted(state):
            d = state[dev]
            if d.source != "none":
                e.add_metric([dev, d.source], d.energy_j)
            if d.power_w is not None:
                p.add_metric([dev], d.power_w)
            if d.last_t is not None:
                ts.add_metric([dev], d.last_t)
        yield e
        yield p
        yield ts
        yield from _serve_families(core, srv, state)
        if srv.tokens is not None:
            try:
                n = _num(srv.tokens())
            except Exception as err:  # noqa: BLE001 - a scrape must not fail because of the caller's callable
                log.debug("tokens callable failed: %s", err)
                n = None
            if n is not None:
                c = core.CounterMetricFamily(PREFIX + "tokens", "Tokens counted so far in the run")
                c.add_metric([], n)
                yield c
        if srv.run:
            info = core.GaugeMetricFamily(PREFIX + "run_info", "The run being recorded (value 1)",
                                          labels=list(srv.run))
            info.add_metric(list(srv.run.values()), 1.0)
            yield info


def _serve_families(core: Any, srv: LiveMetricsServer, state: dict[str, _DeviceEnergy]) -> Iterator[Any]:
    """Serving engines' token rates (collector ``prometheus``) and live J per output token."""
    from ..schema import device_kind, is_accelerator

    try:
        snap = srv.snapshot()
    except Exception as err:  # noqa: BLE001 - the recorder's state must never crash the endpoint
        log.debug("snapshot failed: %s", err)
        return
    rate = core.GaugeMetricFamily(PREFIX + "serve_tokens_per_second", "Serving engine's token rate from its own "
                                  "Prometheus counters (collector prometheus)", labels=["device", "kind"])
    jpt = core.GaugeMetricFamily(PREFIX + "serve_energy_per_output_token_joules", "Latest accelerator power over "
                                 "the serving engine's output token rate (joules per token)", labels=["device"])
    power = sum(d.power_w for k, d in state.items() if is_accelerator(k) and d.power_w is not None)
    for dev in sorted(str(k) for k in snap if device_kind(str(k)) == "serve"):
        s = snap[dev]
        for col, kind in (("prompt_tokens_per_s", "prompt"), ("output_tokens_per_s", "output")):
            v = _num(s.get(col))
            if v is not None:
                rate.add_metric([dev, kind], v)
        out = _num(s.get("output_tokens_per_s"))
        if out and power:
            jpt.add_metric([dev], power / out)
    if rate.samples:
        yield rate
    if jpt.samples:
        yield jpt


class LiveMetricsServer:
    """Serve ``/metrics`` while a run records.

    ``snapshot``: returns the latest sample per device (e.g. ``lambda: dict(recorder.stats.last)``).
    ``tokens``: returns the tokens counted so far (optional). ``run``: labels of
    ``wattprof_run_info`` (e.g. ``{"run": name, "id": run_id}``). Samples are observed every
    ``poll_interval`` seconds and at each scrape, so energy accumulates between scrapes.
    """

    def __init__(self, snapshot: Snapshot, *, tokens: Tokens | None = None, run: Mapping[str, str] | None = None,
                 poll_interval: float = 0.5) -> None:
        self.snapshot = snapshot
        self.tokens = tokens
        self.run = {label_name(k): str(v) for k, v in (run or {}).items()}
        self.poll_interval = float(poll_interval)
        self.energy = LiveEnergy()
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.address: tuple[str, int] | None = None

    @classmethod
    def for_stats(cls, stats: Any, **kwargs: Any) -> LiveMetricsServer:
        """A server fed by a recorder's ``LiveStats`` (its ``last`` dict)."""
        return cls(lambda: dict(stats.last), **kwargs)

    def poll(self) -> None:
        try:
            snap = self.snapshot()
        except Exception as err:  # noqa: BLE001 - the recorder's state must never crash the endpoint
            log.debug("snapshot failed: %s", err)
            return
        self.energy.observe(snap)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start serving in daemon threads; returns the bound port (``port=0`` picks a free one)."""
        if self._server is not None:
            raise WattprofError("the metrics server is already running")
        _prometheus()
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import CollectorRegistry, make_wsgi_app

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_LiveCollector(self))  # type: ignore[arg-type]
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found: try /metrics\n"]
            return metrics_app(environ, start_response)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = family

        class QuietHandler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        try:
            self._server = make_server(host, int(port), app, server_class=Server, handler_class=QuietHandler)
        except OSError as e:
            raise WattprofError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        self.address = (host, int(self._server.server_port))
        self._stop.clear()
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="wattprof-metrics", daemon=True)
        poller = threading.Thread(target=self._poll_loop, name="wattprof-metrics-poll", daemon=True)
        self._threads = [serve, poller]
        for t in self._threads:
            t.start()
        return self.address[1]

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.poll()

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self) -> LiveMetricsServer:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

"""A live ``/metrics`` endpoint while a run records (``wattprof record --metrics-port``): the
series are listed in :mod:`wattprof.exporters.prometheus`. Energy per device accumulates in a
:class:`wattprof.analysis.integrate.EnergyAccumulator` (the live status line's rule)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ...analysis.integrate import DeviceEnergy, EnergyAccumulator, finite
from ...errors import WattprofError
from ._client import PREFIX, label_name, prometheus_core

log = logging.getLogger(__name__)

#: ``snapshot()`` returns the latest sample per device: ``{device: {"t": ..., "energy_j": ...,
#: "power_w": ..., ...}}``; the recorder's ``LiveStats.last`` has exactly this shape.
Snapshot = Callable[[], Mapping[str, Mapping[str, Any]]]
#: ``tokens()`` returns the tokens counted so far, or None.
Tokens = Callable[[], float | None]


class _LiveCollector:
    def __init__(self, server: LiveMetricsServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        core = prometheus_core()
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
                n = finite(srv.tokens())
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


def _serve_families(core: Any, srv: LiveMetricsServer, state: dict[str, DeviceEnergy]) -> Iterator[Any]:
    """Serving engines' token rates (collector ``prometheus``) and live J per output token."""
    from ...schema import device_kind, is_accelerator

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
            v = finite(s.get(col))
            if v is not None:
                rate.add_metric([dev, kind], v)
        out = finite(s.get("output_tokens_per_s"))
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
        self.energy = EnergyAccumulator()
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
        prometheus_core()
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

"""A run's results as a node_exporter textfile (``wattprof export --prometheus-textfile``):
the series are listed in :mod:`wattprof.exporters.prometheus`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...analysis.integrate import finite
from ...errors import InputError
from ...run.durable import write_text_atomic
from ._client import PREFIX, RESERVED_LABELS, label_name, prometheus_core

if TYPE_CHECKING:
    from ...reports.model import Report

log = logging.getLogger(__name__)


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


class ReportCollector:
    """A prometheus_client collector exposing one report (see the package docstring)."""

    def __init__(self, report: Report, *, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None) -> None:
        self.report = report
        self.extra = _extra_labels(report, tags, labels)

    def _family(self, kind: str, name: str, doc: str, labels: Sequence[str] = ()) -> Any:
        core = prometheus_core()
        cls = {"gauge": core.GaugeMetricFamily, "counter": core.CounterMetricFamily}[kind]
        return cls(PREFIX + name, doc, labels=["run", *labels, *self.extra])

    def collect(self) -> Iterator[Any]:
        yield from self._run_families()
        yield from self._device_families()
        yield from self._token_families()
        yield from self._label_families()
        yield from self._carbon_families()

    def _run_families(self) -> Iterator[Any]:
        r, fam = self.report, self._family
        run, ev = str(r.run.get("name") or "run"), list(self.extra.values())
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
        if (end := finite(r.run.get("ended_at"))) is not None:
            g = fam("gauge", "run_end_timestamp_seconds", "When the run ended (Unix seconds)")
            g.add_metric([run, *ev], end)
            yield g

    def _device_families(self) -> Iterator[Any]:
        r, fam = self.report, self._family
        run, ev = str(r.run.get("name") or "run"), list(self.extra.values())
        c = fam("counter", "energy_joules", "Energy per device over the run (joules)", ["device", "source"])
        p = fam("gauge", "power_watts", "Mean power per device over the run (watts)", ["device"])
        for d in r.devices:
            if d.energy_source == "none":
                continue
            c.add_metric([run, d.device, d.energy_source, *ev], d.energy_j)
            if (w := finite(d.mean_power_w)) is not None:
                p.add_metric([run, d.device, *ev], w)
        yield c
        yield p

    def _token_families(self) -> Iterator[Any]:
        r, fam = self.report, self._family
        run, ev = str(r.run.get("name") or "run"), list(self.extra.values())
        if (tokens := finite(r.tokens)) is not None:
            c = fam("counter", "tokens", "Tokens processed in the run")
            c.add_metric([run, *ev], tokens)
            yield c
        if (jpt := finite(r.j_per_token)) is not None:
            g = fam("gauge", "run_energy_per_token_joules", "Energy per token over the run's labelled steps (joules)")
            g.add_metric([run, *ev], jpt)
            yield g

    def _carbon_families(self) -> Iterator[Any]:
        r, fam = self.report, self._family
        run, ev = str(r.run.get("name") or "run"), list(self.extra.values())
        if r.carbon is not None:
            g = fam("gauge", "co2e_grams", f"CO2-equivalent of the run ({r.carbon.basis}, {r.carbon.location}, "
                    f"PUE {r.carbon.pue:g}; grams)")
            g.add_metric([run, *ev], r.carbon.g_co2e)
            yield g

    def _label_families(self) -> Iterator[Any]:
        r, fam = self.report, self._family
        run, ev = str(r.run.get("name") or "run"), list(self.extra.values())
        le = fam("gauge", "label_energy_joules", "Energy per step label, between-step time included (joules)",
                 ["label"])
        lt = fam("gauge", "energy_per_token_joules", "Energy per token per step label (joules)", ["label"])
        for label, lr in r.by_label.items():
            if lr.energy_j is not None:
                le.add_metric([run, label, *ev], lr.energy_j)
            if (jpt := finite(lr.j_per_token)) is not None:
                lt.add_metric([run, label, *ev], jpt)
        yield le
        yield lt


def render_textfile(report: Report, *, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None) -> str:
    """The Prometheus text exposition of ``report`` (what :func:`write_textfile` writes)."""
    prometheus_core()
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
    # a hidden temporary name node_exporter ignores, mode 0666 through the umask, fsync, rename
    write_text_atomic(target, text, "Prometheus textfile")
    return target

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

from ...analysis.integrate import DeviceEnergy
from ...analysis.integrate import EnergyAccumulator as LiveEnergy
from ._client import PREFIX, RESERVED_LABELS, label_name
from .live import LiveMetricsServer, Snapshot, Tokens
from .textfile import ReportCollector, render_textfile, write_textfile

__all__ = ["PREFIX", "RESERVED_LABELS", "DeviceEnergy", "LiveEnergy", "LiveMetricsServer", "ReportCollector",
           "Snapshot", "Tokens", "label_name", "render_textfile", "write_textfile"]

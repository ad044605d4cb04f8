"""The ``neuron-monitor`` format: one JSON report per line (AWS Neuron, Trainium / Inferentia).

Schema: ``tests/fixtures/aws-neuron/README.md`` and the Neuron Monitor user guide. A report has
``neuron_runtime_data`` (one entry per application: ``pid``, ``neuron_runtime_tag``, ``error``,
``report`` with the groups ``neuroncore_counters``, ``memory_used``, ``execution_stats``,
``neuron_runtime_vcpu_usage``), ``system_data`` (``memory_info``, ``vcpu_usage``,
``neuron_hw_counters``), ``instance_info`` and ``neuron_hardware_info``. Any group may be missing
(the first report is partial); every group may carry an ``"error"`` string. Reports carry no
timestamp: a live reader stamps each line on arrival, a file reader gives the report's index.

One sample per Neuron *device* (``neuron:<N>``, the N of ``/sys/devices/virtual/neuron_device/
neuron<N>``), because that is the unit power is known for:

- ``util_pct``: mean over the device's NeuronCores of ``neuroncore_utilization``, each core
  summed across applications (every application lists every visible core, 0 when unused; core
  keys are global indices) and capped at 100;
- ``mem_used_bytes``: device memory of all applications on the device's cores
  (``usage_breakdown.neuroncore_memory_usage``); ``mem_total_bytes``: ``neuron_device_memory_size``;
- per application, attributed to the devices its models are loaded on (all devices when that is
  not known), summed over applications: ``flop_per_s`` (``effective_flops``, else ``flops``),
  ``exec_per_s`` and ``exec_err_per_s`` (executions per second: counts per period / period),
  ``runtime_cpu_pct`` (the runtime's vCPU use, user + system) and ``runtime_host_mem_bytes``;
  latencies ``latency_p50_s`` / ``latency_p99_s`` (``total_latency``, seconds; the largest over
  applications; missing when nothing ran) and ``device_latency_p50_s`` (``device_latency`` of the
  same application: time on the device alone; total - device is the runtime's host overhead);
  ``runtime_err_per_s`` (``error_summary`` counts of every kind, per second);
- ``core_util_min_pct`` / ``core_util_max_pct``: the least and most busy NeuronCore of the device
  (per-core spread, for imbalance);

Cores map to devices through ``neuron_hardware_info``: core ``c`` (a global index, as
``neuroncores_in_use`` keys are) is on device ``c // neuroncore_per_device_count``. That count is
already the *logical* count (4 on a Trn2 with LNC=2, as ``neuron-ls`` shows): it is never divided
by ``logical_neuroncore_config``. Without it, the count follows from the device type (physical
cores per device, divided by the LNC on Trn2); without either, a single-device report puts every
core on device 0 and a multi-device one maps none (and says so). A core beyond the devices the
report describes is left out with an error, never given a device that does not exist. In
``loaded_models``, ``neuroncore_index`` is the core's index *within* ``neuron_device_index``
(the user guide shows core 0 on device 12): it names the application's device, never a global core.

``system_data`` gives a ``host`` sample (``cpu_util_pct`` = 100 - idle, host memory).
Only columns present in :data:`wattprof.schema.METRICS` are stored by a run; the rest are kept in
the sample dicts for callers that want them.

The package, one job per module: :mod:`.values` (tolerant JSON accessors), :mod:`.report` (what a
report says about itself), :mod:`.layout` (cores to devices), :mod:`.samples` (a report to
samples), :mod:`.reader` (a saved log).
"""

from __future__ import annotations

from .layout import MAX_DEVICES, PHYSICAL_CORES, CoreLayout, cores_per_device
from .reader import NeuronMonitorLog, NeuronReport, read_neuron_monitor_jsonl
from .report import (
           ECC_COUNTERS,
           ecc_counters,
           is_partial,
           report_errors,
           report_info,
           report_period,
           report_times,
)
from .samples import DEVICE_COLUMNS, HOST_COLUMNS, device_id, parse_report

__all__ = ["DEVICE_COLUMNS", "ECC_COUNTERS", "HOST_COLUMNS", "MAX_DEVICES", "PHYSICAL_CORES", "CoreLayout",
           "NeuronMonitorLog", "NeuronReport", "cores_per_device", "device_id", "ecc_counters", "is_partial",
           "parse_report", "read_neuron_monitor_jsonl", "report_errors", "report_info", "report_period",
           "report_times"]

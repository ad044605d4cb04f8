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
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Columns a device sample may carry (some may not be schema columns yet: see the module doc).
DEVICE_COLUMNS: tuple[str, ...] = (
    "util_pct", "mem_used_bytes", "mem_total_bytes", "flop_per_s", "exec_per_s", "exec_err_per_s",
    "latency_p50_s", "latency_p99_s", "runtime_cpu_pct", "runtime_host_mem_bytes",
    "core_util_min_pct", "core_util_max_pct", "device_latency_p50_s", "runtime_err_per_s",
)
HOST_COLUMNS: tuple[str, ...] = ("cpu_util_pct", "mem_used_bytes", "mem_total_bytes")
#: Failed-execution counters of ``execution_summary``.
_EXEC_ERRORS = ("completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input", "failed_to_queue")
#: More Neuron devices than this in ``neuron_device_count`` is not a real machine (trn2: 16).
MAX_DEVICES = 1024
#: A report whose every group ``period`` is below this is the partial first report.
_PARTIAL_PERIOD_S = 0.1


def device_id(index: int) -> str:
    return f"neuron:{index}"


def _num(v: Any) -> float:
    """A JSON number as a finite float; NaN for null, strings, booleans, NaN/Infinity, integers
    too large for a float and the rest."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    try:
        f = float(v)
    except OverflowError:
        return math.nan
    return f if math.isfinite(f) else math.nan


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _int_key(k: Any) -> int | None:
    try:
        return int(k)
    except (TypeError, ValueError, OverflowError):
        return None


def _err(group: Any) -> str:
    e = group.get("error") if isinstance(group, dict) else None
    return e.strip() if isinstance(e, str) else ""


def _group(report: Any, name: str) -> dict:
    """A metric group, or {} when it is missing or carries an error (its values are not data)."""
    g = _dict(_dict(report).get(name))
    return {} if _err(g) else g


def report_info(obj: Any) -> dict[str, Any]:
    """``instance_info`` and ``neuron_hardware_info`` of a report, merged (empty when absent)."""
    if not isinstance(obj, dict):
        return {}
    info: dict[str, Any] = {}
    for key in ("instance_info", "neuron_hardware_info"):
        info.update({k: v for k, v in _dict(obj.get(key)).items() if k != "error"})
    return info


def _group_periods(obj: Any) -> list[float]:
    """The ``period`` of every metric group of a report: ``system_data.<group>`` and
    ``neuron_runtime_data[].report.<group>`` (where the user guide puts them)."""
    groups = list(_dict(_dict(obj).get("system_data")).values())
    for app in _list(_dict(obj).get("neuron_runtime_data")):
        groups += list(_dict(_dict(app).get("report")).values())
    periods = [_num(_dict(g).get("period")) for g in groups]
    return [p for p in periods if not math.isnan(p) and p >= 0]


def is_partial(obj: Any) -> bool:
    """The partial first report: every group present was measured over a near-zero period."""
    periods = _group_periods(obj)
    return bool(periods) and max(periods) < _PARTIAL_PERIOD_S


def report_period(obj: Any) -> float | None:
    """Seconds the report covers: the longest ``period`` of its metric groups (None without any)."""
    periods = _group_periods(obj)
    return max(periods) if periods else None


def report_times(periods: list[float | None], *, start_s: float | None = None,
                 end_s: float | None = None) -> list[float]:
    """Wall-clock times of consecutive reports from their periods (each report is printed one
    period after the one before), anchored at the first report's ``start_s`` or the last's ``end_s``.
    A report without a period counts as the median of the others (1 s when none has one)."""
    known = sorted(p for p in periods if p is not None and p > 0)
    fill = known[len(known) // 2] if known else 1.0
    steps = [fill if p is None else p for p in periods]
    offsets = [0.0]
    for p in steps[1:]:
        offsets.append(offsets[-1] + p)
    if start_s is not None:
        return [start_s + o for o in offsets]
    if end_s is None:
        raise ValueError("report_times needs start_s or end_s")
    return [end_s - offsets[-1] + o for o in offsets]


#: ``system_data.neuron_hw_counters.neuron_devices[]`` ECC counters (user guide), most severe first.
ECC_COUNTERS = ("mem_ecc_uncorrected", "sram_ecc_uncorrected", "mem_ecc_corrected", "sram_ecc_corrected")


def ecc_counters(obj: Any) -> dict[int, dict[str, int]]:
    """Per device index, the report's ECC counters (only those present as whole numbers >= 0)."""
    group = _group(_dict(_dict(obj).get("system_data")), "neuron_hw_counters")
    out: dict[int, dict[str, int]] = {}
    for entry in _list(group.get("neuron_devices")):
        dev = _int_key(_dict(entry).get("neuron_device_index"))
        if dev is None or isinstance(_dict(entry).get("neuron_device_index"), bool):
            continue
        counts = {k: int(v) for k in ECC_COUNTERS
                  if not math.isnan(v := _num(entry.get(k))) and v >= 0 and v == int(v)}
        if counts:
            out[dev] = counts
    return out


def report_errors(obj: Any) -> list[str]:
    """Every non-empty ``"error"`` string, each prefixed with where it was found."""
    if not isinstance(obj, dict):
        return ["report is not a JSON object"]
    out: list[str] = []
    for key in ("instance_info", "neuron_hardware_info"):
        if e := _err(obj.get(key)):
            out.append(f"{key}: {e}")
    for name, group in _dict(obj.get("system_data")).items():
        if e := _err(group):
            out.append(f"system_data.{name}: {e}")
    for app in _list(obj.get("neuron_runtime_data")):
        if not isinstance(app, dict):
            continue
        who = f"application pid {app.get('pid', '?')}"
        if app.get("neuron_runtime_tag"):
            who += f" ({app['neuron_runtime_tag']})"
        if e := _err(app):
            out.append(f"{who}: {e}")
        for name, group in _dict(app.get("report")).items():
            if e := _err(group):
                out.append(f"{who} {name}: {e}")
    return out


#: Physical NeuronCores per device, by ``neuron_hardware_info.neuron_device_type`` (user guide /
#: architecture pages: Inferentia 4 x NeuronCore-v1, Trainium and Inferentia2 2 x NeuronCore-v2,
#: Trainium2 8 x NeuronCore-v3, combined LNC at a time into logical cores). Only a fallback for a
#: report without ``neuroncore_per_device_count``.
PHYSICAL_CORES: dict[str, int] = {"inferentia": 4, "inferentia2": 2, "trainium": 2, "trainium2": 8}


@dataclass
class _Layout:
    """Which device each (global, logical) NeuronCore is on."""

    cores_per_device: int | None
    device_count: int | None

    def device_of(self, core: int) -> int | None:
        """The core's device, or None when the report does not say (or describes no such device)."""
        if core < 0:
            return None
        if self.cores_per_device:
            dev = core // self.cores_per_device
            return dev if self.device_count is None or dev < self.device_count else None
        return 0 if self.device_count in (None, 1) else None

    def describe(self) -> str:
        per = f"{self.cores_per_device} core(s)" if self.cores_per_device else "an unknown number of cores"
        count = f"{self.device_count} device(s)" if self.device_count is not None else "its devices"
        return f"{count} x {per} (neuron_hardware_info)"


def cores_per_device(hw: Mapping[str, Any]) -> int | None:
    """Logical NeuronCores per device: ``neuroncore_per_device_count`` as reported (already logical),
    else the device type's physical count divided by the LNC (Trn2 only)."""
    per = _num(hw.get("neuroncore_per_device_count"))
    if per >= 1:
        return int(per)
    physical = PHYSICAL_CORES.get(str(hw.get("neuron_device_type", "")).strip().lower())
    if physical is None:
        return None
    lnc = _num(hw.get("logical_neuroncore_config"))
    return max(physical // int(lnc), 1) if lnc > 1 else physical


def _layout(obj: dict, hardware: Mapping[str, Any] | None) -> _Layout:
    hw = dict(hardware or {})
    hw.update({k: v for k, v in _dict(obj.get("neuron_hardware_info")).items() if v not in (None, "")})
    count = _num(hw.get("neuron_device_count"))
    return _Layout(cores_per_device(hw), int(count) if 0 <= count <= MAX_DEVICES else None)


def _app_devices(report: dict, layout: _Layout, known: set[int]) -> set[int]:
    """Devices an application's models are loaded on (``neuron_device_index``; ``neuroncore_index``
    is device-local and says nothing about the device), else every known device."""
    devs: set[int] = set()
    for model in _list(_group(report, "memory_used").get("loaded_models")):
        for sg in _dict(_dict(model).get("subgraphs")).values():
            dev = _int_key(_dict(sg).get("neuron_device_index"))
            if dev is not None and dev >= 0 and (layout.device_count is None or dev < layout.device_count):
                devs.add(dev)
    return devs or set(known)


def _add(row: dict[str, float], key: str, value: float) -> None:
    if math.isnan(value):
        return
    row[key] = value if math.isnan(row.get(key, math.nan)) else row[key] + value


def parse_report(obj: Any, *, hardware: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """One neuron-monitor report -> (samples, errors).

    Samples are dicts with ``device`` and metric columns, without ``t`` (reports carry no time).
    ``hardware`` is a ``neuron_hardware_info`` seen earlier, used where this report lacks one.
    Errors are the report's ``"error"`` strings with where they were found. Nothing raises on a
    malformed report: missing or mistyped values are left out.
    """
    errors = report_errors(obj)
    if not isinstance(obj, dict):
        return [], errors
    layout = _layout(obj, hardware)
    hw = {**dict(hardware or {}), **_dict(obj.get("neuron_hardware_info"))}
    apps = obj.get("neuron_runtime_data")
    apps = [a for a in apps if isinstance(a, dict)] if isinstance(apps, list) else None

    # per-core utilisation, FLOP/s and memory, summed across applications
    core_util: dict[int, float] = {}
    core_flops: dict[int, float] = {}
    core_mem: dict[int, float] = {}
    for app in apps or []:
        report = _dict(app.get("report"))
        in_use = _dict(_group(report, "neuroncore_counters").get("neuroncores_in_use"))
        for key, core_data in in_use.items():
            core = _int_key(key)
            if core is None:
                continue
            u = _num(_dict(core_data).get("neuroncore_utilization"))
            if not math.isnan(u):
                core_util[core] = core_util.get(core, 0.0) + u
            f = _num(_dict(core_data).get("effective_flops"))
            if math.isnan(f):
                f = _num(_dict(core_data).get("flops"))
            if not math.isnan(f):
                core_flops[core] = core_flops.get(core, 0.0) + f
        used = _dict(_group(report, "memory_used").get("neuron_runtime_used_bytes"))
        for key, parts in _dict(_dict(used.get("usage_breakdown")).get("neuroncore_memory_usage")).items():
            core = _int_key(key)
            if core is None:
                continue
            total = sum(v for v in (_num(x) for x in _dict(parts).values()) if not math.isnan(v))
            core_mem[core] = core_mem.get(core, 0.0) + total

    known: set[int] = set(range(layout.device_count)) if layout.device_count else set()
    where = {c: layout.device_of(c) for c in {*core_util, *core_flops, *core_mem}}
    known |= {d for d in where.values() if d is not None}
    lost = sorted(c for c, d in where.items() if d is None)
    if lost:
        errors.append(f"NeuronCore(s) {', '.join(map(str, lost))} not on any of the {layout.describe()}: left out")
    rows: dict[int, dict[str, Any]] = {d: {} for d in sorted(known)}

    partial = is_partial(obj)
    by_dev: dict[int, list[int]] = {}
    for c, d in where.items():
        if d is not None:
            by_dev.setdefault(d, []).append(c)
    for dev, row in rows.items():
        on_dev = by_dev.get(dev, [])
        per_core = [min(core_util[c], 100.0) for c in on_dev if c in core_util]
        if per_core:
            row["util_pct"] = sum(per_core) / len(per_core)
            row["core_util_min_pct"], row["core_util_max_pct"] = min(per_core), max(per_core)
        elif apps == [] and not partial:
            row["util_pct"] = 0.0  # no application: the device's cores are idle
        flops = [core_flops[c] for c in on_dev if c in core_flops]
        if flops:
            row["flop_per_s"] = sum(flops)
        mem = [core_mem[c] for c in on_dev if c in core_mem]
        if mem:
            row["mem_used_bytes"] = sum(mem)
        elif apps == [] and not partial:
            row["mem_used_bytes"] = 0.0
        total = _num(hw.get("neuron_device_memory_size"))
        if total > 0:
            row["mem_total_bytes"] = total

    # per-application figures, on the devices the application uses
    for app in apps or []:
        report = _dict(app.get("report"))
        devs = _app_devices(report, layout, set(rows))
        stats = _group(report, "execution_stats")
        period = _num(stats.get("period"))
        summary = _dict(stats.get("execution_summary"))
        latency = _dict(_dict(stats.get("latency_stats")).get("total_latency"))
        on_device = _num(_dict(_dict(stats.get("latency_stats")).get("device_latency")).get("p50"))
        errsum = [_num(v) for v in _dict(stats.get("error_summary")).values()]
        errsum = [e for e in errsum if not math.isnan(e)]
        used = _dict(_group(report, "memory_used").get("neuron_runtime_used_bytes"))
        vcpu = _dict(_group(report, "neuron_runtime_vcpu_usage").get("vcpu_usage"))
        cpu = _num(vcpu.get("user")) + _num(vcpu.get("system"))
        for dev in devs:
            row = rows.setdefault(dev, {})
            if period > 0:
                _add(row, "exec_per_s", _num(summary.get("completed")) / period)
                errs = [_num(summary.get(k)) for k in _EXEC_ERRORS]
                if any(not math.isnan(e) for e in errs):
                    _add(row, "exec_err_per_s", sum(e for e in errs if not math.isnan(e)) / period)
                if errsum:
                    _add(row, "runtime_err_per_s", sum(errsum) / period)
            for q, col in (("p50", "latency_p50_s"), ("p99", "latency_p99_s")):
                v = _num(latency.get(q))
                if not math.isnan(v):
                    row[col] = max(v, row.get(col, v))
            if not math.isnan(on_device) and not math.isnan(_num(latency.get("p50"))):
                # with the largest total p50 (same application), its device p50
                if row.get("latency_p50_s") == _num(latency.get("p50")):
                    row["device_latency_p50_s"] = on_device
            _add(row, "runtime_cpu_pct", cpu)
            _add(row, "runtime_host_mem_bytes", _num(used.get("host")))
        if not _dict(used.get("usage_breakdown")).get("neuroncore_memory_usage") and len(rows) == 1:
            _add(next(iter(rows.values())), "mem_used_bytes", _num(used.get("neuron_device")))

    samples: list[dict[str, Any]] = [{"device": device_id(d), **r} for d, r in sorted(rows.items()) if r]
    host = _host_sample(_dict(obj.get("system_data")))
    if host:
        samples.append(host)
    return samples, errors


def _host_sample(system: dict) -> dict[str, Any] | None:
    row: dict[str, Any] = {}
    idle = _num(_dict(_group(system, "vcpu_usage").get("average_usage")).get("idle"))
    if not math.isnan(idle):
        row["cpu_util_pct"] = min(max(100.0 - idle, 0.0), 100.0)
    mem = _group(system, "memory_info")
    for src, col in (("memory_used_bytes", "mem_used_bytes"), ("memory_total_bytes", "mem_total_bytes")):
        v = _num(mem.get(src))
        if not math.isnan(v):
            row[col] = v
    return {"device": "host", **row} if row else None


@dataclass
class NeuronReport:
    """One line of a neuron-monitor log."""

    line: int
    samples: list[dict[str, Any]]
    errors: list[str]
    info: dict[str, Any]
    partial: bool
    #: Seconds this report covers (its metric groups' longest ``period``), None without groups.
    period_s: float | None = None


@dataclass
class NeuronMonitorLog:
    reports: list[NeuronReport]
    #: Things skipped on purpose (a cut-off last line), one line each, for the user.
    warnings: list[str] = field(default_factory=list)


def read_neuron_monitor_jsonl(path: str | Path) -> NeuronMonitorLog:
    """Read a saved ``neuron-monitor`` stdout (one JSON report per line).

    A line that is not JSON raises :class:`InputError` with its path and line number, except a
    cut-off last line (neuron-monitor stopped mid-write), which is skipped with a warning. Reports
    carry no time: ``NeuronReport.line`` orders them (one per configured period).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected neuron-monitor output, one JSON report per line)", path=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (expected neuron-monitor JSON lines)", path=str(p)) from None
    lines = text.splitlines()
    log = NeuronMonitorLog([])
    hardware: dict[str, Any] = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except RecursionError:
            raise InputError("JSON nested too deeply; expected one neuron-monitor report per line",
                             path=str(p), line=n) from None
        except json.JSONDecodeError as e:
            if n == len(lines) and not text.endswith("\n"):
                log.warnings.append(f"{p}:{n}: last line is cut off (neuron-monitor stopped mid-write); skipped")
                continue
            raise InputError(f"not JSON ({e.msg} at column {e.colno}); expected one neuron-monitor "
                             "report per line", path=str(p), line=n) from None
        if not isinstance(obj, dict):
            raise InputError(f"a JSON {type(obj).__name__}, expected a neuron-monitor report object",
                             path=str(p), line=n)
        hardware.update({k: v for k, v in _dict(obj.get("neuron_hardware_info")).items() if v not in (None, "")})
        samples, errors = parse_report(obj, hardware=hardware)
        log.reports.append(NeuronReport(n, samples, errors, report_info(obj), is_partial(obj), report_period(obj)))
    if not log.reports:
        raise InputError("no reports in file (expected neuron-monitor JSON lines)", path=str(p))
    return log

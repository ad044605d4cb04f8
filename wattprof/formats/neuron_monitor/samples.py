"""One neuron-monitor report -> samples: one per Neuron device, and the host (see the package doc)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .layout import app_devices, layout_of
from .report import is_partial, report_errors
from .values import as_dict, int_key, metric_group, num

#: Columns a device sample may carry (some may not be schema columns yet: see the module doc).
DEVICE_COLUMNS: tuple[str, ...] = (
    "util_pct", "mem_used_bytes", "mem_total_bytes", "flop_per_s", "exec_per_s", "exec_err_per_s",
    "latency_p50_s", "latency_p99_s", "runtime_cpu_pct", "runtime_host_mem_bytes",
    "core_util_min_pct", "core_util_max_pct", "device_latency_p50_s", "runtime_err_per_s",
)
HOST_COLUMNS: tuple[str, ...] = ("cpu_util_pct", "mem_used_bytes", "mem_total_bytes")
#: Failed-execution counters of ``execution_summary``.
_EXEC_ERRORS = ("completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input", "failed_to_queue")


def device_id(index: int) -> str:
    return f"neuron:{index}"


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
    layout = layout_of(obj, hardware)
    hw = {**dict(hardware or {}), **as_dict(obj.get("neuron_hardware_info"))}
    apps = obj.get("neuron_runtime_data")
    apps = [a for a in apps if isinstance(a, dict)] if isinstance(apps, list) else None
    totals = _CoreTotals.of(apps or [])

    known: set[int] = set(range(layout.device_count)) if layout.device_count else set()
    where = {c: layout.device_of(c) for c in totals.cores()}
    known |= {d for d in where.values() if d is not None}
    lost = sorted(c for c, d in where.items() if d is None)
    if lost:
        errors.append(f"NeuronCore(s) {', '.join(map(str, lost))} not on any of the {layout.describe()}: left out")
    rows: dict[int, dict[str, Any]] = {d: {} for d in sorted(known)}
    by_dev: dict[int, list[int]] = {}
    for c, d in where.items():
        if d is not None:
            by_dev.setdefault(d, []).append(c)
    idle = apps == [] and not is_partial(obj)  # no application: the device's cores are idle
    for dev, row in rows.items():
        _device_figures(row, totals, by_dev.get(dev, []), idle, num(hw.get("neuron_device_memory_size")))
    for app in apps or []:  # per-application figures, on the devices the application uses
        report = as_dict(app.get("report"))
        _app_figures(report, [rows.setdefault(dev, {}) for dev in app_devices(report, layout, set(rows))])
        used = as_dict(metric_group(report, "memory_used").get("neuron_runtime_used_bytes"))
        if not as_dict(used.get("usage_breakdown")).get("neuroncore_memory_usage") and len(rows) == 1:
            _add(next(iter(rows.values())), "mem_used_bytes", num(used.get("neuron_device")))

    samples: list[dict[str, Any]] = [{"device": device_id(d), **r} for d, r in sorted(rows.items()) if r]
    host = _host_sample(as_dict(obj.get("system_data")))
    if host:
        samples.append(host)
    return samples, errors


@dataclass
class _CoreTotals:
    """Per NeuronCore (global index): utilisation, FLOP/s and memory, summed across applications."""

    util: dict[int, float] = field(default_factory=dict)
    flops: dict[int, float] = field(default_factory=dict)
    mem: dict[int, float] = field(default_factory=dict)

    def cores(self) -> set[int]:
        return {*self.util, *self.flops, *self.mem}

    @classmethod
    def of(cls, apps: list[dict]) -> _CoreTotals:
        out = cls()
        for app in apps:
            report = as_dict(app.get("report"))
            in_use = as_dict(metric_group(report, "neuroncore_counters").get("neuroncores_in_use"))
            for key, core_data in in_use.items():
                core = int_key(key)
                if core is None:
                    continue
                u = num(as_dict(core_data).get("neuroncore_utilization"))
                if not math.isnan(u):
                    out.util[core] = out.util.get(core, 0.0) + u
                f = num(as_dict(core_data).get("effective_flops"))
                if math.isnan(f):
                    f = num(as_dict(core_data).get("flops"))
                if not math.isnan(f):
                    out.flops[core] = out.flops.get(core, 0.0) + f
            used = as_dict(metric_group(report, "memory_used").get("neuron_runtime_used_bytes"))
            for key, parts in as_dict(as_dict(used.get("usage_breakdown")).get("neuroncore_memory_usage")).items():
                core = int_key(key)
                if core is None:
                    continue
                total = sum(v for v in (num(x) for x in as_dict(parts).values()) if not math.isnan(v))
                out.mem[core] = out.mem.get(core, 0.0) + total
        return out


def _device_figures(row: dict[str, Any], totals: _CoreTotals, on_dev: list[int], idle: bool,
                    memory_size: float) -> None:
    """A device's utilisation (mean over its cores, each capped at 100), core spread, FLOP/s and memory."""
    per_core = [min(totals.util[c], 100.0) for c in on_dev if c in totals.util]
    if per_core:
        row["util_pct"] = sum(per_core) / len(per_core)
        row["core_util_min_pct"], row["core_util_max_pct"] = min(per_core), max(per_core)
    elif idle:
        row["util_pct"] = 0.0
    flops = [totals.flops[c] for c in on_dev if c in totals.flops]
    if flops:
        row["flop_per_s"] = sum(flops)
    mem = [totals.mem[c] for c in on_dev if c in totals.mem]
    if mem:
        row["mem_used_bytes"] = sum(mem)
    elif idle:
        row["mem_used_bytes"] = 0.0
    if memory_size > 0:
        row["mem_total_bytes"] = memory_size


def _app_figures(report: dict, rows: list[dict[str, Any]]) -> None:
    """One application's executions, errors, latencies and runtime CPU/memory, added to the rows of
    the devices it uses (latencies: the largest over applications)."""
    stats = metric_group(report, "execution_stats")
    period = num(stats.get("period"))
    summary = as_dict(stats.get("execution_summary"))
    latency = as_dict(as_dict(stats.get("latency_stats")).get("total_latency"))
    on_device = num(as_dict(as_dict(stats.get("latency_stats")).get("device_latency")).get("p50"))
    errsum = [e for e in (num(v) for v in as_dict(stats.get("error_summary")).values()) if not math.isnan(e)]
    used = as_dict(metric_group(report, "memory_used").get("neuron_runtime_used_bytes"))
    vcpu = as_dict(metric_group(report, "neuron_runtime_vcpu_usage").get("vcpu_usage"))
    cpu = num(vcpu.get("user")) + num(vcpu.get("system"))
    for row in rows:
        if period > 0:
            _add(row, "exec_per_s", num(summary.get("completed")) / period)
            errs = [num(summary.get(k)) for k in _EXEC_ERRORS]
            if any(not math.isnan(e) for e in errs):
                _add(row, "exec_err_per_s", sum(e for e in errs if not math.isnan(e)) / period)
            if errsum:
                _add(row, "runtime_err_per_s", sum(errsum) / period)
        for q, col in (("p50", "latency_p50_s"), ("p99", "latency_p99_s")):
            v = num(latency.get(q))
            if not math.isnan(v):
                row[col] = max(v, row.get(col, v))
        if not math.isnan(on_device) and not math.isnan(num(latency.get("p50"))):
            # with the largest total p50 (same application), its device p50
            if row.get("latency_p50_s") == num(latency.get("p50")):
                row["device_latency_p50_s"] = on_device
        _add(row, "runtime_cpu_pct", cpu)
        _add(row, "runtime_host_mem_bytes", num(used.get("host")))


def _host_sample(system: dict) -> dict[str, Any] | None:
    row: dict[str, Any] = {}
    idle = num(as_dict(metric_group(system, "vcpu_usage").get("average_usage")).get("idle"))
    if not math.isnan(idle):
        row["cpu_util_pct"] = min(max(100.0 - idle, 0.0), 100.0)
    mem = metric_group(system, "memory_info")
    for src, col in (("memory_used_bytes", "mem_used_bytes"), ("memory_total_bytes", "mem_total_bytes")):
        v = num(mem.get(src))
        if not math.isnan(v):
            row[col] = v
    return {"device": "host", **row} if row else None

"""``wattprof import --samples neuron.jsonl``: samples from neuron-monitor output a user already logged.

One JSON report per line, as ``neuron-monitor`` prints them. Reports carry no time: each report
is printed one ``period`` after the one before (its metric groups say how long they covered), so
times are rebuilt from the periods and anchored at ``--start`` (the first report's Unix time) or,
without it, at the file's modification time taken as the last report's time (a note says which).
Devices, per-core mapping and figures are those of the live collector
(:func:`wattprof.formats.neuron_monitor.parse_report`). A log has no sysfs power, so watts are the
utilisation-based estimate with the device type's documented defaults
(:func:`wattprof.collectors.neuron_power.power_model`), stored as ``power_est_w`` and labelled; without a
default, power stays unestimated and the utilisation is kept.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .collectors.neuron_power import (
    TYPE_NAMES,
    estimate_power,
    power_model,
    type_from_instance,
    type_from_name,
)
from .formats.neuron_monitor import read_neuron_monitor_jsonl, report_times


def sniff(path: Path) -> bool:
    """The first non-empty line is a JSON object with neuron-monitor's top-level keys."""
    try:
        with path.open(errors="replace") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return isinstance(obj, dict) and bool(
                        {"neuron_runtime_data", "neuron_hardware_info", "system_data"} & set(obj))
    except (OSError, ValueError, RecursionError):
        return False
    return False


def neuron_monitor_samples(path: Path, start_s: float | None = None) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    log = read_neuron_monitor_jsonl(path)
    notes = list(log.warnings)
    if start_s is None:
        end = os.path.getmtime(path)
        times = report_times([r.period_s for r in log.reports], end_s=end)
        stamp = datetime.fromtimestamp(end, tz=UTC).isoformat(timespec="seconds")
        notes.append(f"report times rebuilt from their periods, the last one at the file's modification time "
                     f"({stamp}); pass --start to anchor the first report instead")
    else:
        times = report_times([r.period_s for r in log.reports], start_s=start_s)
        notes.append("report times rebuilt from their periods, the first one at --start")
    info: dict[str, Any] = {}
    for r in log.reports:
        info.update({k: v for k, v in r.info.items() if v not in (None, "")})
    kind = type_from_instance(info.get("instance_type")) or type_from_name(str(info.get("neuron_device_type", "")))
    model = power_model(kind)
    rows: list[dict[str, Any]] = []
    seen_errors: set[str] = set()
    for r, t in zip(log.reports, times, strict=True):
        for e in r.errors:
            if e not in seen_errors:
                seen_errors.add(e)
                notes.append(f"{path.name}:{r.line}: {e}")
        for s in r.samples:
            if s["device"] == "host":
                continue
            row = {"t": t, **s}
            if model.max_w is not None:
                estimate_power(row, model.max_w, model.idle_w)
            rows.append(row)
    type_name = TYPE_NAMES.get(kind or "")
    devices: dict[str, dict] = {}
    for dev in sorted({r["device"] for r in rows}, key=lambda d: int(d.split(":", 1)[1])):
        meta: dict[str, Any] = {
            "kind": "neuron", "vendor": "aws", "neuron_index": int(dev.split(":", 1)[1]),
            "name": (type_name or "AWS Neuron device") + (f" ({info['instance_type']})" if info.get("instance_type") else ""),
            "power_estimated": model.max_w is not None, "max_w": model.max_w,
            "idle_w": model.idle_w if model.max_w is not None else None,
            "max_w_from": model.max_w_from, "idle_w_from": model.idle_w_from,
        }
        if model.max_w is None:
            meta["power_source"] = (f"none: no known maximum power for {type_name or 'this device type'} (imported "
                                    f"from {path.name}); NeuronCore utilization is kept")
        else:
            meta["power_source"] = (
                f"estimated: utilization-based, idle_w + (max_w - idle_w) x NeuronCore utilization, imported from "
                f"{path.name} (a neuron-monitor log has no sysfs power); max_w={model.max_w:g} W "
                f"({model.max_w_from}), idle_w={model.idle_w:g} W ({model.idle_w_from})")
        for k in ("instance_type", "instance_id", "neuron_device_type", "neuron_device_version",
                  "neuroncore_per_device_count", "logical_neuroncore_config", "neuron_device_memory_size"):
            if k in info:
                meta[k] = info[k]
        devices[dev] = meta
    df = pd.DataFrame(rows)
    return df, devices, notes

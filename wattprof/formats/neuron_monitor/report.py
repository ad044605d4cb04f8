"""What one neuron-monitor report says about itself: instance and hardware info, the period it
covers (and whether it is the partial first one), ECC counters, its ``"error"`` strings."""

from __future__ import annotations

import math
from typing import Any

from .values import as_dict, as_list, group_error, int_key, metric_group, num

#: A report whose every group ``period`` is below this is the partial first report.
_PARTIAL_PERIOD_S = 0.1



def report_info(obj: Any) -> dict[str, Any]:
    """``instance_info`` and ``neuron_hardware_info`` of a report, merged (empty when absent)."""
    if not isinstance(obj, dict):
        return {}
    info: dict[str, Any] = {}
    for key in ("instance_info", "neuron_hardware_info"):
        info.update({k: v for k, v in as_dict(obj.get(key)).items() if k != "error"})
    return info


def _group_periods(obj: Any) -> list[float]:
    """The ``period`` of every metric group of a report: ``system_data.<group>`` and
    ``neuron_runtime_data[].report.<group>`` (where the user guide puts them)."""
    groups = list(as_dict(as_dict(obj).get("system_data")).values())
    for app in as_list(as_dict(obj).get("neuron_runtime_data")):
        groups += list(as_dict(as_dict(app).get("report")).values())
    periods = [num(as_dict(g).get("period")) for g in groups]
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
    group = metric_group(as_dict(as_dict(obj).get("system_data")), "neuron_hw_counters")
    out: dict[int, dict[str, int]] = {}
    for entry in as_list(group.get("neuron_devices")):
        dev = int_key(as_dict(entry).get("neuron_device_index"))
        if dev is None or isinstance(as_dict(entry).get("neuron_device_index"), bool):
            continue
        counts = {k: int(v) for k in ECC_COUNTERS
                  if not math.isnan(v := num(entry.get(k))) and v >= 0 and v == int(v)}
        if counts:
            out[dev] = counts
    return out


def report_errors(obj: Any) -> list[str]:
    """Every non-empty ``"error"`` string, each prefixed with where it was found."""
    if not isinstance(obj, dict):
        return ["report is not a JSON object"]
    out: list[str] = []
    for key in ("instance_info", "neuron_hardware_info"):
        if e := group_error(obj.get(key)):
            out.append(f"{key}: {e}")
    for name, group in as_dict(obj.get("system_data")).items():
        if e := group_error(group):
            out.append(f"system_data.{name}: {e}")
    for app in as_list(obj.get("neuron_runtime_data")):
        if not isinstance(app, dict):
            continue
        who = f"application pid {app.get('pid', '?')}"
        if app.get("neuron_runtime_tag"):
            who += f" ({app['neuron_runtime_tag']})"
        if e := group_error(app):
            out.append(f"{who}: {e}")
        for name, group in as_dict(app.get("report")).items():
            if e := group_error(group):
                out.append(f"{who} {name}: {e}")
    return out

"""Which GPUs NVML reads (``CUDA_VISIBLE_DEVICES``, MIG) and what it reads on each: the table of
per-device readings, the power fields, and one opened GPU's bookkeeping (:class:`Device`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .codes import CLOCK_SM, FI_POWER_AVERAGE, FI_POWER_INSTANT, TEMPERATURE_GPU


def parse_visible_devices(value: str | None, uuids: list[str]) -> list[tuple[int, bool]]:
    """Which NVML indices ``CUDA_VISIBLE_DEVICES`` selects, in CUDA order, as (index, is_mig) pairs.

    Unset means all; empty means none. Entries are indices, ``GPU-<uuid>`` (a unique prefix is
    enough) or ``MIG-<uuid>`` (measured on the parent GPU, flagged shared: MIG slices have no
    power reading of their own). Like CUDA, parsing stops at the first entry that matches nothing.
    Indices follow NVML's PCI order, which is CUDA's only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    if value is None:
        return [(i, False) for i in range(len(uuids))]
    out: list[tuple[int, bool]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.isdigit():
            i = int(entry)
            if i >= len(uuids):
                break
            out.append((i, False))
        elif entry.startswith("GPU-"):
            hits = [i for i, u in enumerate(uuids) if u.startswith(entry)]
            if len(hits) != 1:
                break
            out.append((hits[0], False))
        elif entry.startswith("MIG-"):
            out.append((-1, True))  # resolved to the parent by the collector
        else:
            break
    return out

@dataclass(frozen=True)
class Metric:
    """One optional NVML reading: the pynvml functions that give it (newest first: an older driver
    or binding may lack the first) and how the answer becomes schema columns."""

    columns: tuple[str, ...]
    functions: tuple[str, ...]
    args: tuple[int, ...] = ()
    convert: Callable[[Any], dict[str, float]] = lambda v: {}


#: The per-device readings after the energy counter and the power fields, in call order.
#: ``nvmlDeviceGetTemperature`` is deprecated (removed in newer bindings): ``...TemperatureV``
#: replaces it. ``...ClocksEventReasons`` (driver R535+) replaced ``...ClocksThrottleReasons``.
METRICS: tuple[Metric, ...] = (
    Metric(("util_pct", "mem_util_pct"), ("nvmlDeviceGetUtilizationRates",),
            convert=lambda u: {"util_pct": float(u.gpu), "mem_util_pct": float(u.memory)}),
    Metric(("mem_used_bytes",), ("nvmlDeviceGetMemoryInfo",), convert=lambda m: {"mem_used_bytes": float(m.used)}),
    Metric(("sm_clock_mhz",), ("nvmlDeviceGetClockInfo",), (CLOCK_SM,), lambda v: {"sm_clock_mhz": float(v)}),
    Metric(("temp_c",), ("nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureV"), (TEMPERATURE_GPU,),
            lambda v: {"temp_c": float(v)}),
    Metric(("throttle_reasons",), ("nvmlDeviceGetCurrentClocksEventReasons",
                                    "nvmlDeviceGetCurrentClocksThrottleReasons"),
            convert=lambda v: {"throttle_reasons": float(v)}),
)
ENERGY = Metric(("energy_j",), ("nvmlDeviceGetTotalEnergyConsumption",),
                  convert=lambda mj: {"energy_j": mj / 1000.0})
FIELDS = ((FI_POWER_INSTANT, "power_w"), (FI_POWER_AVERAGE, "power_avg_w"))


@dataclass
class Device:
    """One opened GPU: its handle, what it cannot give, which function answers each metric."""

    dev: str
    handle: Any
    #: column(s) -> why they are not recorded (noted once)
    missing: dict[tuple[str, ...], str] = field(default_factory=dict)
    #: metric columns -> index into Metric.functions of the function that answers
    choice: dict[tuple[str, ...], int] = field(default_factory=dict)
    #: metric columns -> the function that answered (the fast path of later reads)
    fns: dict[tuple[str, ...], Callable[..., Any]] = field(default_factory=dict)
    errors: int = 0  # transient read errors (readings dropped)
    errors_noted_at: float = -math.inf  # monotonic time of the last device_read_error event
    #: the power fields still asked for: (field id, column), and their ids
    fields: list[tuple[int, str]] = field(default_factory=lambda: list(FIELDS))
    field_ids: list[int] = field(default_factory=lambda: [fid for fid, _ in FIELDS])

_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal")


def field_value(fv: Any) -> float:
    """A ``c_nvmlFieldValue_t``'s value by its ``valueType`` (0 double, 1 uint, 2 ulong, 3 ullong,
    4 sllong, 5 sint); power fields are unsigned int (mW)."""
    kind = getattr(fv, "valueType", 1)
    return float(getattr(fv.value, _VALUE_MEMBERS[kind] if 0 <= kind < len(_VALUE_MEMBERS) else "uiVal"))

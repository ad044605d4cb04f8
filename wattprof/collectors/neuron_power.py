"""The watts of a Neuron device (Trainium, Inferentia) are an estimate: its device type (from the
instance type, neuron-monitor's hardware info or sysfs names), the type's maximum power and idle
floor (each with its source), and the estimate from a sysfs power percentage or the NeuronCore
utilisation. Facts: ``tests/fixtures/aws-neuron/README.md`` and ``docs/collectors.md``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

TYPE_NAMES: dict[str, str] = {"inf1": "Inferentia1", "inf2": "Inferentia2", "trn1": "Trainium1",
                              "trn2": "Trainium2", "trn3": "Trainium3"}


@dataclass(frozen=True)
class PowerDefault:
    """A device type's default maximum power and where the figure comes from."""

    max_w: float
    source: str


_THIRD_PARTY = "third-party estimate (AWS publishes no chip power; tests/fixtures/aws-neuron/README.md)"
#: Maximum power per device, watts. No Trainium3 figure is known: it stays unestimated.
POWER_DEFAULTS: dict[str, PowerDefault] = {
    "inf1": PowerDefault(75.0, _THIRD_PARTY),
    "inf2": PowerDefault(100.0, _THIRD_PARTY),
    "trn1": PowerDefault(100.0, "derived: Inferentia2's figure, since AWS's architecture pages give Trainium the same "
                                "device (2 x NeuronCore-v2, 190 BF16 TFLOPS, 32 GiB HBM at 820 GB/s); no Trainium "
                                "figure is published"),
    "trn2": PowerDefault(500.0, _THIRD_PARTY),
}
MAX_W_DEFAULTS: dict[str, float] = {k: v.max_w for k, v in POWER_DEFAULTS.items()}
#: Idle floor as a share of max_w: the sysfs figure excludes background power, so 0 W would
#: undercount. No Neuron idle power is published; 0.17 is the measured idle/limit ratio of the H100
#: capture in tests/fixtures/nvidia-h100 (120 W idle at a 700 W limit), an accelerator of the same
#: class. An assumption, labelled as one.
IDLE_FLOOR_FRACTION = 0.17
IDLE_FLOOR_SOURCE = ("assumed floor: 17 % of max_w (no Neuron idle power is published; the measured idle/limit "
                     "ratio of an H100, tests/fixtures/nvidia-h100: 120 W of 700 W)")

#: neuron_hardware_info.neuron_device_type -> type. The user guide shows ("trainium2", "v4") on
#: trn2; real reports: ("trainium", "v2") on trn1, ("inferentia2", "v3") on inf2, ("inferentia",
#: "v1") on inf1. The name decides.
_HW_TYPES: dict[str, str] = {"inferentia": "inf1", "inferentia2": "inf2", "trainium": "trn1", "trainium1": "trn1",
                             "trainium2": "trn2", "trainium3": "trn3"}
#: Instance families: trn1.2xlarge, trn1n.32xlarge, trn2.48xlarge, trn2u.48xlarge (UltraServer
#: node), trn2n (the user guide's example): a letter suffix is a variant of the same chip.
_INSTANCE_RE = re.compile(r"^(inf1|inf2|trn1|trn2|trn3)[a-z]*[.\-]", re.IGNORECASE)


def type_from_instance(instance_type: str | None) -> str | None:
    m = _INSTANCE_RE.match(instance_type or "")
    return m.group(1).lower() if m else None


def type_from_name(value: str | None) -> str | None:
    """``trn2``, ``Trainium2``, ``trainium2``, ``Inferentia`` (sysfs/neuron-monitor names) -> type key."""
    v = (value or "").strip().lower()
    for key, name in TYPE_NAMES.items():
        if v in (key, name.lower()):
            return key
    return _HW_TYPES.get(v)


def normalise_type(value: str) -> str:
    found = type_from_name(value)
    if found is None:
        raise InputError(f"neuron: device_type {value!r} is not one of {', '.join(TYPE_NAMES)}")
    return found


@dataclass(frozen=True)
class PowerModel:
    """The watts model of one device type: ``max_w`` None means no estimate."""

    max_w: float | None
    idle_w: float
    max_w_from: str | None
    idle_w_from: str | None


def power_model(device_type: str | None, max_w: float | None = None, idle_w: float | None = None) -> PowerModel:
    """``max_w``/``idle_w`` from the options, else the device type's defaults, each with its source."""
    default = POWER_DEFAULTS.get(device_type or "")
    type_name = TYPE_NAMES.get(device_type or "", "an unknown Neuron device type")
    if max_w is not None:
        mx, mx_from = float(max_w), "option max_w"
    elif default is not None:
        mx, mx_from = default.max_w, f"default for {type_name}: {default.source}"
    else:
        mx, mx_from = None, None
    if idle_w is not None:
        idle, idle_from = float(idle_w), "option idle_w"
    elif mx is not None:
        idle, idle_from = round(IDLE_FLOOR_FRACTION * mx, 1), IDLE_FLOOR_SOURCE
    else:
        idle, idle_from = 0.0, None
    if mx is not None and idle > mx:
        raise InputError(f"neuron: idle_w ({idle}) is above max_w ({mx})")
    return PowerModel(mx, idle, mx_from, idle_from)


def estimate_power(row: dict[str, Any], max_w: float, idle_w: float) -> None:
    """Set ``row["power_est_w"]``: from the sysfs percentage where the row has one, else from the
    NeuronCore utilisation; nothing when it has neither."""
    pct = row.get("power_util_pct")
    if pct is not None and not math.isnan(pct):
        row["power_est_w"] = idle_w + pct / 100.0 * max_w
        return
    util = row.get("util_pct")
    if util is not None and not math.isnan(util):
        row["power_est_w"] = idle_w + (max_w - idle_w) * min(max(util, 0.0), 100.0) / 100.0


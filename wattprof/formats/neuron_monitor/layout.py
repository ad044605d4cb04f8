"""Which Neuron device each NeuronCore is on, and which devices an application uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .values import as_dict, as_list, int_key, metric_group, num

#: More Neuron devices than this in ``neuron_device_count`` is not a real machine (trn2: 16).
MAX_DEVICES = 1024

#: Physical NeuronCores per device, by ``neuron_hardware_info.neuron_device_type`` (user guide /
#: architecture pages: Inferentia 4 x NeuronCore-v1, Trainium and Inferentia2 2 x NeuronCore-v2,
#: Trainium2 8 x NeuronCore-v3, combined LNC at a time into logical cores). Only a fallback for a
#: report without ``neuroncore_per_device_count``.
PHYSICAL_CORES: dict[str, int] = {"inferentia": 4, "inferentia2": 2, "trainium": 2, "trainium2": 8}


@dataclass
class CoreLayout:
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
    per = num(hw.get("neuroncore_per_device_count"))
    if per >= 1:
        return int(per)
    physical = PHYSICAL_CORES.get(str(hw.get("neuron_device_type", "")).strip().lower())
    if physical is None:
        return None
    lnc = num(hw.get("logical_neuroncore_config"))
    return max(physical // int(lnc), 1) if lnc > 1 else physical


def layout_of(obj: dict, hardware: Mapping[str, Any] | None) -> CoreLayout:
    hw = dict(hardware or {})
    hw.update({k: v for k, v in as_dict(obj.get("neuron_hardware_info")).items() if v not in (None, "")})
    count = num(hw.get("neuron_device_count"))
    return CoreLayout(cores_per_device(hw), int(count) if 0 <= count <= MAX_DEVICES else None)


def app_devices(report: dict, layout: CoreLayout, known: set[int]) -> set[int]:
    """Devices an application's models are loaded on (``neuron_device_index``; ``neuroncore_index``
    is device-local and says nothing about the device), else every known device."""
    devs: set[int] = set()
    for model in as_list(metric_group(report, "memory_used").get("loaded_models")):
        for sg in as_dict(as_dict(model).get("subgraphs")).values():
            dev = int_key(as_dict(sg).get("neuron_device_index"))
            if dev is not None and dev >= 0 and (layout.device_count is None or dev < layout.device_count):
                devs.add(dev)
    return devs or set(known)

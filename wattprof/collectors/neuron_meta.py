"""What the run's metadata says about each Neuron device: its name and type, where its power
comes from (sysfs power utilization, NeuronCore utilization or nothing, with the watts model and
its sources), how its sysfs directory was paired, and what the instance reports. A mixin of
:class:`~wattprof.collectors.neuron.NeuronCollector`; :func:`detect_type` finds the device type."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .neuron_power import TYPE_NAMES, type_from_instance, type_from_name
from .neuron_sysfs import PowerNode, SysfsDevice
from .streaming import LineProcess

DMI_PRODUCT_NAME = Path("/sys/devices/virtual/dmi/id/product_name")


def detect_type(info: dict[str, Any], hardware: dict[str, Any], sysfs: dict[int, SysfsDevice]) -> str | None:
    """The device type: from the instance type (neuron-monitor's ``instance_info``, else the DMI
    product name, the instance type on EC2 Nitro), else ``neuron_hardware_info``, else the sysfs
    ``info/architecture`` names; None when nothing says."""
    found = type_from_instance(info.get("instance_type"))
    if found:
        return found
    try:
        found = type_from_instance(DMI_PRODUCT_NAME.read_text().strip())
    except OSError:
        found = None
    if found:
        return found
    found = type_from_name(str(hardware.get("neuron_device_type", "")))
    if found:
        return found
    for dev in sysfs.values():  # info/architecture/{device_name,device_type,instance_type}
        for key in ("device_name", "device_type", "instance_type"):
            found = type_from_name(dev.names.get(key)) or type_from_instance(f"{dev.names.get(key, '')}.")
            if found:
                return found
    return None


class NeuronDeviceMeta:
    """Device metadata of the Neuron collector (its state is the collector's)."""

    name: ClassVar[str]
    sysfs_root: Path
    device_type: str | None
    max_w: float | None
    idle_w: float
    max_w_from: str | None
    idle_w_from: str | None
    _proc: LineProcess | None
    _sysfs: dict[int, SysfsDevice]
    _pairing: dict[int, int]
    _pairing_note: str | None
    _power: dict[int, list[PowerNode]]

    def _no_node_reason(self, index: int) -> str:
        if self._pairing_note and self._pairing_note.startswith("ambiguous"):
            return self._pairing_note
        if not self._sysfs:
            return f"no Neuron sysfs tree at {self.sysfs_root}"
        s = self._pairing.get(index)
        if s is None:
            return f"no sysfs neuron<N> is tied to this device ({self._pairing_note or 'none matches'})"
        return f"no sysfs power node (tried {'; '.join(self._sysfs[s].tried)})"

    def power_source(self, index: int) -> str:
        type_name = TYPE_NAMES.get(self.device_type or "", "this Neuron device type (unknown)")
        if self.max_w is None:
            return (f"none: no known maximum power for {type_name} (AWS publishes no chip power, and no estimate is "
                    "on record); NeuronCore utilization is kept; pass max_w=WATTS (and idle_w=WATTS) to estimate")
        watts = f"max_w={self.max_w:g} W ({self.max_w_from}), idle_w={self.idle_w:g} W ({self.idle_w_from})"
        util = "idle_w + (max_w - idle_w) x NeuronCore utilization (neuron-monitor)"
        nodes = self._power.get(index)
        if nodes:
            what = {"raw": "live per-die power utilization, driver 2.29+",
                    "minute": "per-minute average, held until the next minute's"}
            used = "; else ".join(f"{n.path} ({what[n.kind]})" for n in nodes)
            text = (f"estimated: idle_w + max_w x neuron sysfs power utilization (percent of max power, background "
                    f"power backed out) from {used}")
            if self._proc is not None:
                text += f"; while it has no valid data: {util}"
            return f"{text}; {watts}"
        if self._proc is not None:
            return f"estimated: utilization-based, {util}; {self._no_node_reason(index)}; {watts}"
        return f"none: {self._no_node_reason(index)} and no neuron-monitor"

    def _device_meta(self, index: int, info: dict[str, Any], hardware: dict[str, Any]) -> dict[str, Any]:
        type_name = TYPE_NAMES.get(self.device_type or "")
        meta: dict[str, Any] = {
            "kind": "neuron", "vendor": "aws", "neuron_index": index, "collector": self.name,
            "name": (type_name or "AWS Neuron device") + (f" ({info['instance_type']})" if info.get("instance_type") else ""),
            "power_source": self.power_source(index),
            "power_estimated": self.max_w is not None,
            "max_w": self.max_w, "idle_w": self.idle_w if self.max_w is not None else None,
            "max_w_from": self.max_w_from, "idle_w_from": self.idle_w_from,
            "timestamps": "stamped on arrival (neuron-monitor reports carry no time)",
        }
        s = self._pairing.get(index)
        if s is not None:
            meta["sysfs_device"] = str(self._sysfs[s].path)
            for k, v in (("serial", self._sysfs[s].serial), ("pci_bdf", self._sysfs[s].bdf)):
                if v:
                    meta[k] = v
        if self._pairing_note:
            meta["sysfs_pairing"] = self._pairing_note
        for k in ("instance_type", "instance_id", "instance_region"):
            if info.get(k):
                meta[k] = info[k]
        for k in ("neuron_device_type", "neuron_device_version", "neuroncore_version",
                  "neuroncore_per_device_count", "logical_neuroncore_config", "neuron_device_memory_size"):
            if k in hardware:
                meta[k] = hardware[k]
        return meta

"""The one vocabulary of wattprof: sample, step, event and meta field names with units.

Every column carries its unit in its name. Times are wall-clock Unix seconds (float64)
everywhere inside wattprof; conversions happen at the edges (collectors, importers).
Collectors fill the metric columns they can and leave the rest missing; analysis code reads
only these names, never a collector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Time of a sample, wall clock, Unix seconds (float64).
T = "t"
#: Stable device id: ``gpu:0``, ``neuron:0``, ``host``, ``cw:i-0abc/gpu:1`` ...
DEVICE = "device"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    description: str


#: Metric columns of the samples table. All are stored as float64 (missing = NaN).
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("energy_j", "J", "device's own cumulative energy counter (e.g. NVML TotalEnergyConsumption)"),
        Metric("power_w", "W", "instantaneous power reading (NVML field 186, nvidia-smi power.draw.instant)"),
        Metric("power_avg_w", "W", "averaged power reading: trailing 1 s mean (nvmlDeviceGetPowerUsage, power.draw)"),
        Metric("power_est_w", "W", "estimated power from a model (utilisation, TDP); never a measurement"),
        Metric("power_limit_w", "W", "enforced power limit at the time of the sample"),
        Metric("util_pct", "%", "percent of time one or more kernels ran (utilization.gpu)"),
        Metric("mem_util_pct", "%", "percent of time device memory was read or written (utilization.memory)"),
        Metric("sm_active_pct", "%", "GPM SM activity"),
        Metric("sm_occupancy_pct", "%", "GPM SM occupancy"),
        Metric("tensor_active_pct", "%", "GPM tensor pipe activity"),
        Metric("dram_active_pct", "%", "GPM DRAM bandwidth utilisation"),
        Metric("pcie_tx_mbps", "MB/s", "PCIe transmit rate"),
        Metric("pcie_rx_mbps", "MB/s", "PCIe receive rate"),
        Metric("nvlink_tx_mbps", "MB/s", "NVLink transmit rate"),
        Metric("nvlink_rx_mbps", "MB/s", "NVLink receive rate"),
        Metric("mem_used_bytes", "B", "device (or host) memory in use"),
        Metric("mem_total_bytes", "B", "device (or host) memory size"),
        Metric("sm_clock_mhz", "MHz", "SM clock"),
        Metric("mem_clock_mhz", "MHz", "memory clock"),
        Metric("temp_c", "°C", "device temperature"),
        Metric("throttle_reasons", "bitmask", "NVML clock-event reasons bitmask"),
        Metric("cpu_util_pct", "%", "host CPU utilisation, mean over all logical CPUs"),
        Metric("power_util_pct", "%", "Neuron sysfs power utilisation: percent of max power, per-minute average"),
        Metric("flop_per_s", "FLOP/s", "achieved FLOP/s (neuron-monitor effective_flops)"),
        Metric("exec_per_s", "1/s", "executions completed per second"),
        Metric("exec_err_per_s", "1/s", "failed executions per second"),
        Metric("latency_p50_s", "s", "execution total latency, median"),
        Metric("latency_p99_s", "s", "execution total latency, 99th percentile"),
        Metric("runtime_cpu_pct", "%", "the accelerator runtime's vCPU use (user + system)"),
        Metric("runtime_host_mem_bytes", "B", "host memory used by the accelerator runtime"),
        Metric("prompt_tokens_per_s", "1/s", "serving engine's prompt tokens per second (its Prometheus counter)"),
        Metric("output_tokens_per_s", "1/s", "serving engine's generated tokens per second (its Prometheus counter)"),
        Metric("requests_running", "count", "requests the serving engine is running (its Prometheus gauge)"),
        Metric("core_util_min_pct", "%", "least busy core of the device (NeuronCore utilisation)"),
        Metric("core_util_max_pct", "%", "busiest core of the device (NeuronCore utilisation)"),
        Metric("device_latency_p50_s", "s", "execution time on the device alone, median (neuron-monitor)"),
        Metric("runtime_err_per_s", "1/s", "errors the accelerator runtime reported per second (error_summary)"),
    ]
}

#: NVML clock-event (throttle) reason bits (REFERENCE.md, nvmlDeviceGetCurrentClocksEventReasons).
THROTTLE_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock",
}

# --- steps -----------------------------------------------------------------------------------
#: Step columns: ``t_start``/``t_end`` wall clock seconds; ``tokens`` optional; ``label`` free text.
STEP_COLUMNS: tuple[str, ...] = ("step", "t_start", "t_end", "tokens", "label", "rank")
#: Keys accepted as the label of an imported step, in order of preference.
LABEL_KEYS: tuple[str, ...] = ("label", "phase", "kind")
DEFAULT_LABEL = "step"

# --- per-device power provenance ---------------------------------------------------------------
EnergySource = Literal["counter", "instant_power", "averaged_power", "estimate", "none"]
#: Best first. Analysis picks, per device, the first source the samples can support.
#: The deconvolved averaged reading ranks above the instant one: benchmarks/accuracy.py measured it
#: closer to the counter on every busy phase of the real H100 traces (instant power at 100 ms aliases).
ENERGY_SOURCES: tuple[EnergySource, ...] = ("counter", "averaged_power", "instant_power", "estimate")
SOURCE_COLUMN: dict[str, str] = {
    "counter": "energy_j",
    "instant_power": "power_w",
    "averaged_power": "power_avg_w",
    "estimate": "power_est_w",
}
SOURCE_DESCRIPTION: dict[str, str] = {
    "counter": "hardware energy counter",
    "instant_power": "integrated instant power",
    "averaged_power": "averaged (1 s trailing mean) power, deconvolved",
    "estimate": "estimate (model, not a measurement)",
    "none": "no power data",
}

DeviceKind = Literal["gpu", "neuron", "host", "serve", "other"]


def device_kind(device: str) -> DeviceKind:
    """``gpu:0`` -> ``gpu``; ``host`` -> ``host``; ``cw:i-1/gpu:0`` -> ``gpu``."""
    last = device.rsplit("/", 1)[-1]
    kind = last.split(":", 1)[0]
    if kind in ("gpu", "neuron", "host", "serve"):
        return kind  # type: ignore[return-value]
    return "other"


def is_accelerator(device: str) -> bool:
    return device_kind(device) in ("gpu", "neuron", "other")  # "serve": token counters of a server, no power

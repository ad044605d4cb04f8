"""NVIDIA GPUs through NVML (nvidia-ml-py, module ``pynvml``).

Per GPU and sample: the energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since driver
load), instant power (field 186) and averaged power (``nvmlDeviceGetPowerUsage`` = field 185, a
1 s trailing mean on Ampere+), utilisation, memory used, SM clock, temperature and clock-event
reasons, plus GPM activity on Hopper and newer. Facts and costs: REFERENCE.md ("NVIDIA: NVML and
nvidia-smi").

Modules, one job each: :mod:`.collector` (:class:`NvmlCollector`: open the selected GPUs, read
each on its own, report what happened as events), :mod:`.devices` (``CUDA_VISIBLE_DEVICES``/MIG
selection, the table of per-device readings), :mod:`.gpm` (GPM windows), :mod:`.codes` (NVML's
numbers and the one translation of ``NVMLError``), :mod:`.replay` and :mod:`.replay_gpm` (the
injectable backend that replays a recorded capture: :class:`ReplayNvml`,
:class:`NvmlReplayCollector`).
"""

from .codes import (
    CLOCK_MEM,
    CLOCK_SM,
    ERROR_ARGUMENT_VERSION_MISMATCH,
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_INVALID_ARGUMENT,
    ERROR_NO_DATA,
    ERROR_NO_PERMISSION,
    ERROR_NOT_SUPPORTED,
    ERROR_TIMEOUT,
    FI_POWER_AVERAGE,
    FI_POWER_INSTANT,
    TEMPERATURE_GPU,
    nvml_errors,
)
from .collector import READ_ERROR_NOTE_S, NvmlCollector
from .devices import parse_visible_devices
from .gpm import GPM_COLUMNS, GPM_FUNCTIONS, GPM_MIN_INTERVAL_S, GpmSampler
from .replay import NvmlReplayCollector, ReplayNvml, ReplayNVMLError, default_trace
from .replay_gpm import (
    GPM_METRIC_IDS,
    GPM_METRIC_MAX,
    GPM_METRICS_GET_VERSION,
    ReplayGpmMetric,
    ReplayGpmMetricsGet,
    ReplayGpmSample,
)

__all__ = [
    "CLOCK_MEM", "CLOCK_SM", "ERROR_ARGUMENT_VERSION_MISMATCH", "ERROR_FUNCTION_NOT_FOUND", "ERROR_GPU_IS_LOST",
    "ERROR_INVALID_ARGUMENT", "ERROR_NOT_SUPPORTED", "ERROR_NO_DATA", "ERROR_NO_PERMISSION", "ERROR_TIMEOUT",
    "FI_POWER_AVERAGE", "FI_POWER_INSTANT", "GPM_COLUMNS", "GPM_FUNCTIONS", "GPM_METRICS_GET_VERSION",
    "GPM_METRIC_IDS", "GPM_METRIC_MAX", "GPM_MIN_INTERVAL_S", "READ_ERROR_NOTE_S", "TEMPERATURE_GPU", "GpmSampler",
    "NvmlCollector", "NvmlReplayCollector", "ReplayGpmMetric", "ReplayGpmMetricsGet", "ReplayGpmSample",
    "ReplayNVMLError", "ReplayNvml", "default_trace", "nvml_errors", "parse_visible_devices",
]

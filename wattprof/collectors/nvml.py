"""NVIDIA GPUs through NVML (nvidia-ml-py, module ``pynvml``).

Per GPU and sample: the energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since driver
load), instant power (field 186) and averaged power (``nvmlDeviceGetPowerUsage`` = field 185, a
1 s trailing mean on Ampere+), utilisation, memory used, SM clock, temperature and clock-event
reasons. Facts and costs: REFERENCE.md ("NVIDIA: NVML and nvidia-smi").

GPM activity (Hopper and newer; REFERENCE.md): SM activity and occupancy, tensor and DRAM activity,
PCIe and NVLink rates (:data:`wattprof.formats.gpm_csv.GPM_COLUMN_MAP`). Where the device supports
it, :class:`NvmlCollector` keeps two GPM samples per GPU and, at most every ``gpm_interval``
seconds (default and minimum 0.5 s), takes the next one and computes the metrics over the window
between the two (``nvmlGpmMetricsGet``). Each window becomes a **separate row** for the device,
holding only the GPM columns and stamped at the window's **midpoint**: a GPM value at ``t`` is
the mean over ``[t - d/2, t + d/2]`` (``d`` the window, ~``gpm_interval``), the same convention as
the ``gpm-csv`` importer (:mod:`wattprof.formats.gpm_csv`), so analysis that holds each sample to
the half-way points between neighbours recovers the windows. The ordinary NVML rows are stamped
just before their reads and never carry GPM columns. A device without GPM (not Hopper+, a driver
or nvidia-ml-py without the GPM functions, NVML "Not Supported") is measured as before, with
``gpm: "unsupported: <reason>"`` in its metadata; never an error.

The NVML library is injected: :class:`NvmlCollector` takes any object with pynvml's functions.
:class:`ReplayNvml` is such an object that plays back a recorded ``nvml-trace-csv`` on the
collector's clock, so the same code path runs on a GPU, in tests and in ``wattprof demo``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, DeviceLostError, InputError
from .base import Collector

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FI_POWER_AVERAGE = 185  # NVML_FI_DEV_POWER_AVERAGE
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
CLOCK_SM = 1  # NVML_CLOCK_SM
CLOCK_MEM = 2  # NVML_CLOCK_MEM
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
ERROR_NOT_SUPPORTED = 3
ERROR_INVALID_ARGUMENT = 2
ERROR_NO_PERMISSION = 4
ERROR_TIMEOUT = 10
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_NO_DATA = 21
ERROR_ARGUMENT_VERSION_MISMATCH = 25
#: Shortest GPM window the collector takes (seconds): the cadence of the real H100 GPM capture
#: (``fixtures/nvidia-h100-gpm``); shorter windows only add NVML calls under the driver lock.
GPM_MIN_INTERVAL_S = 0.5
#: pynvml's GPM functions the collector needs (absent in old nvidia-ml-py: GPM is unsupported).
GPM_FUNCTIONS = ("nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet",
                 "nvmlGpmSampleFree", "nvmlGpmMetricsGet", "c_nvmlGpmMetricsGet_t",
                 "NVML_GPM_METRICS_GET_VERSION")

#: After the first three, a GPU's transient read errors are noted at most once per this many
#: seconds, each event with the count so far (the report takes the highest).
READ_ERROR_NOTE_S = 10.0

F = TypeVar("F", bound=Callable[..., Any])


def nvml_errors(fn: F) -> F:
    """Translate the backend's NVMLError into wattprof's CollectorError / DeviceLostError."""

    @functools.wraps(fn)
    def wrapper(self: NvmlCollector, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except self.nvml.NVMLError as e:  # type: ignore[misc]
            code = getattr(e, "value", None)
            if code == ERROR_GPU_IS_LOST:
                raise DeviceLostError(f"NVML: GPU is lost ({e})") from None
            raise CollectorError(f"NVML error in {fn.__name__}: {e}") from None

    return wrapper  # type: ignore[return-value]


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


#: The GPM columns (the values of :data:`wattprof.formats.gpm_csv.GPM_COLUMN_MAP`, spelled out so
#: that importing the collector does not import pandas; a test keeps the two equal).
GPM_COLUMNS = ("sm_active_pct", "sm_occupancy_pct", "tensor_active_pct", "dram_active_pct",
               "pcie_tx_mbps", "pcie_rx_mbps", "nvlink_tx_mbps", "nvlink_rx_mbps")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _gpm_option(value: Any) -> bool | None:
    """``gpm`` option: None/"auto" (use GPM where supported), True ("on": the same, but say so in
    the log when it is not), False ("off": never touch GPM). Spec strings and 0/1 are accepted."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"gpm option must be auto, true or false, not {value!r}")


@dataclass
class _GpmState:
    """One GPU's GPM bookkeeping: ``prev`` holds the window's start, ``next`` is filled at its end."""

    handle: Any
    prev: Any
    next: Any
    t_prev: float  # wall time of prev (clock.time())
    m_prev: float  # monotonic time of prev (schedules the next window)
    request: Any  # the library's c_nvmlGpmMetricsGet_t, metric ids set once
    columns: list[str]  # schema column of request.metrics[i]
    scales: list[float]  # request.metrics[i].value x scale = the schema unit (MiB/s -> MB/s)


@dataclass(frozen=True)
class _Metric:
    """One optional NVML reading: the pynvml functions that give it (newest first: an older driver
    or binding may lack the first) and how the answer becomes schema columns."""

    columns: tuple[str, ...]
    functions: tuple[str, ...]
    args: tuple[int, ...] = ()
    convert: Callable[[Any], dict[str, float]] = lambda v: {}


#: The per-device readings after the energy counter and the power fields, in call order.
#: ``nvmlDeviceGetTemperature`` is deprecated (removed in newer bindings): ``...TemperatureV``
#: replaces it. ``...ClocksEventReasons`` (driver R535+) replaced ``...ClocksThrottleReasons``.
_METRICS: tuple[_Metric, ...] = (
    _Metric(("util_pct", "mem_util_pct"), ("nvmlDeviceGetUtilizationRates",),
            convert=lambda u: {"util_pct": float(u.gpu), "mem_util_pct": float(u.memory)}),
    _Metric(("mem_used_bytes",), ("nvmlDeviceGetMemoryInfo",), convert=lambda m: {"mem_used_bytes": float(m.used)}),
    _Metric(("sm_clock_mhz",), ("nvmlDeviceGetClockInfo",), (CLOCK_SM,), lambda v: {"sm_clock_mhz": float(v)}),
    _Metric(("temp_c",), ("nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureV"), (TEMPERATURE_GPU,),
            lambda v: {"temp_c": float(v)}),
    _Metric(("throttle_reasons",), ("nvmlDeviceGetCurrentClocksEventReasons",
                                    "nvmlDeviceGetCurrentClocksThrottleReasons"),
            convert=lambda v: {"throttle_reasons": float(v)}),
)
_ENERGY = _Metric(("energy_j",), ("nvmlDeviceGetTotalEnergyConsumption",),
                  convert=lambda mj: {"energy_j": mj / 1000.0})
_FIELDS = ((FI_POWER_INSTANT, "power_w"), (FI_POWER_AVERAGE, "power_avg_w"))


@dataclass
class _Device:
    """One opened GPU: its handle, what it cannot give, which function answers each metric."""

    dev: str
    handle: Any
    #: column(s) -> why they are not recorded (noted once)
    missing: dict[tuple[str, ...], str] = field(default_factory=dict)
    #: metric columns -> index into _Metric.functions of the function that answers
    choice: dict[tuple[str, ...], int] = field(default_factory=dict)
    #: metric columns -> the function that answered (the fast path of later reads)
    fns: dict[tuple[str, ...], Callable[..., Any]] = field(default_factory=dict)
    errors: int = 0  # transient read errors (readings dropped)
    errors_noted_at: float = -math.inf  # monotonic time of the last device_read_error event
    #: the power fields still asked for: (field id, column), and their ids
    fields: list[tuple[int, str]] = field(default_factory=lambda: list(_FIELDS))
    field_ids: list[int] = field(default_factory=lambda: [fid for fid, _ in _FIELDS])


class _Unavailable(Exception):
    """A metric this device (its driver, the bindings) cannot give: missing, with the reason."""


_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal")


def _field_value(fv: Any) -> float:
    """A ``c_nvmlFieldValue_t``'s value by its ``valueType`` (0 double, 1 uint, 2 ulong, 3 ullong,
    4 sllong, 5 sint); power fields are unsigned int (mW)."""
    kind = getattr(fv, "valueType", 1)
    return float(getattr(fv.value, _VALUE_MEMBERS[kind] if 0 <= kind < len(_VALUE_MEMBERS) else "uiVal"))


class NvmlCollector(Collector):
    """NVML collector: ``nvml[:gpm=auto|true|false,gpm_interval=0.5]``.

    GPM rows (see the module docstring): a separate row per device and GPM window, only the GPM
    columns, ``t`` = the window's midpoint; ``gpm_interval`` (seconds, at least
    :data:`GPM_MIN_INTERVAL_S`) is the shortest window: a window closes on the first read at least
    that long after it opened, so it spans a whole number of the sampler's periods.

    Real machines (docs/collectors.md, "nvml"): each GPU is read, stamped and kept on its own. A
    metric a device cannot give (NOT_SUPPORTED, e.g. utilisation on a GPU in MIG mode; a function
    the driver or the bindings lack) is missing for that device, noted once; a transient error on
    one GPU drops only that GPU's reading; a lost GPU is dropped alone. Only the GPUs that
    ``CUDA_VISIBLE_DEVICES`` selects are opened; one that cannot be opened is skipped. What
    happened is reported through :meth:`take_events` (the recorder writes it to the run)."""

    name = "nvml"
    metrics = ("energy_j", "power_w", "power_avg_w", "util_pct", "mem_util_pct", "mem_used_bytes",
               "sm_clock_mhz", "temp_c", "throttle_reasons", *GPM_COLUMNS)

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, nvml: Any = None, gpm: bool | str | None = None,
                 gpm_interval: float = GPM_MIN_INTERVAL_S) -> None:
        super().__init__(clock=clock)
        self._nvml = nvml
        self._reading: list[_Device] = []
        self._open = False
        self._events: list[dict[str, Any]] = []
        self.gpm = _gpm_option(gpm)
        try:
            interval = float(gpm_interval)
        except (TypeError, ValueError):
            raise InputError(f"gpm_interval must be a number of seconds, not {gpm_interval!r}") from None
        if not math.isfinite(interval) or interval <= 0:
            raise InputError(f"gpm_interval must be a positive number of seconds, not {gpm_interval!r}")
        self.gpm_interval = max(interval, GPM_MIN_INTERVAL_S)
        self._gpm: dict[str, _GpmState] = {}
        #: Per device: "enabled", "disabled ..." or "unsupported: <reason>" (also in the device
        #: metadata from open(); updated if GPM fails later in the run).
        self.gpm_status: dict[str, str] = {}

    @property
    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

    @property
    def _handles(self) -> list[tuple[str, Any]]:
        """(device id, NVML handle) of the GPUs being read."""
        return [(d.dev, d.handle) for d in self._reading]

    def available(self) -> tuple[bool, str]:
        try:
            lib = self.nvml
        except ImportError:
            return False, "nvidia-ml-py (module pynvml) is not installed"
        try:
            lib.nvmlInit()
        except lib.NVMLError as e:
            return False, f"NVML could not initialise ({e}): no NVIDIA driver or GPU on this machine"
        except OSError as e:
            return False, f"NVML library not loadable ({e})"
        try:
            n = lib.nvmlDeviceGetCount()
        except lib.NVMLError as e:
            return False, f"NVML could not count the GPUs ({e})"
        finally:
            try:
                lib.nvmlShutdown()
            except lib.NVMLError as e:
                log.debug("nvmlShutdown failed: %s", e)
        if n == 0:
            return False, "NVML found no GPU"
        return True, f"{n} GPU(s) via NVML"

    # --- events (device skipped / lost, metric missing, reading dropped) ---------------------

    def take_events(self) -> list[dict[str, Any]]:
        """What happened since the last call, as ``{"kind", "message", "device", ...}`` dicts; the
        recorder writes them to the run's events (``device_skipped``, ``device_lost``,
        ``metric_missing``, ``device_read_error``)."""
        events, self._events = self._events, []
        return events

    def _note(self, kind: str, dev: str, message: str, **extra: Any) -> None:
        log.info("%s", message)
        self._events.append({"kind": kind, "message": message, "device": dev, "t": self.clock.time(), **extra})

    # --- open ------------------------------------------------------------------------------------

    @nvml_errors
    def open(self) -> dict[str, dict]:
        lib = self.nvml
        lib.nvmlInit()
        self._open = True
        try:
            devices = self._open_selected(lib)
        except BaseException:
            self._release()  # a failed open leaves no NVML init and no GPM sample behind
            raise
        return devices

    def _open_selected(self, lib: Any) -> dict[str, dict]:
        count = lib.nvmlDeviceGetCount()
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        entries = [e.strip() for e in (env or "").split(",")]
        # UUIDs are needed only to match GPU-<uuid> entries; a GPU whose handle is refused matches nothing.
        uuids = [self._uuid_or_blank(lib, i) for i in range(count)] if any(e.startswith("GPU-") for e in entries) \
            else [""] * count
        selected = parse_visible_devices(env, uuids)
        mig_entries = [e for e in entries if e.startswith("MIG-")]
        devices: dict[str, dict] = {}
        mig_i, entry = 0, ""
        for cuda_index, (idx, is_mig) in enumerate(selected):
            try:
                if is_mig:
                    entry, mig_i = mig_entries[mig_i], mig_i + 1
                    idx, h = self._mig_parent(lib, entry)
                else:
                    h = lib.nvmlDeviceGetHandleByIndex(idx)
            except lib.NVMLError as e:
                dev = f"gpu:{idx}" if idx >= 0 else entry
                self._note("device_skipped", dev, f"{dev}: not recorded: NVML could not open it ({e})",
                           reason=str(e))
                continue
            dev = f"gpu:{idx}"
            if dev in devices:
                devices[dev]["shared"] = True
                continue
            try:
                devices[dev] = self._open_device(lib, dev, h, idx, cuda_index, is_mig)
            except lib.NVMLError as e:
                self._gpm_drop(dev)
                self._note("device_skipped", dev, f"{dev}: not recorded: NVML failed while opening it ({e})",
                           reason=str(e))
                continue
            self._reading.append(_Device(dev, h))
        chosen = {i for i, _ in selected if i >= 0} | {int(d.partition(":")[2]) for d in devices}
        for i in range(count):
            if i not in chosen:  # never opened: its handle may well be refused (cgroup device limits)
                self._note("device_unselected", f"gpu:{i}", f"gpu:{i}: not recorded: not selected by "
                           f"CUDA_VISIBLE_DEVICES={env}", reason="not selected by CUDA_VISIBLE_DEVICES")
        if selected and not devices:
            skipped = [e["message"] for e in self._events if e["kind"] == "device_skipped"]
            raise CollectorError("none of the selected GPUs could be opened: " + "; ".join(skipped))
        if env is not None and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            for info in devices.values():
                info["cuda_order_note"] = ("CUDA_VISIBLE_DEVICES indices were read in NVML (PCI) order; "
                                           "set CUDA_DEVICE_ORDER=PCI_BUS_ID for the two to agree")
        return devices

    def _uuid_or_blank(self, lib: Any, i: int) -> str:
        try:
            return _str(lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetHandleByIndex(i)))
        except lib.NVMLError as e:
            log.info("gpu:%d: no UUID (%s): it cannot match a GPU- entry of CUDA_VISIBLE_DEVICES", i, e)
            return ""

    def _open_device(self, lib: Any, dev: str, h: Any, idx: int, cuda_index: int, is_mig: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "kind": "gpu", "vendor": "nvidia", "name": _str(lib.nvmlDeviceGetName(h)),
            "uuid": _str(lib.nvmlDeviceGetUUID(h)), "nvml_index": idx, "cuda_index": cuda_index,
            "collector": self.name,
        }
        try:
            info["power_limit_w"] = lib.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
        except lib.NVMLError as e:
            if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                raise
            info["power_limit_w"] = None
        if is_mig:
            info["shared"] = True
            info["note"] = "MIG slice selected: energy is the whole parent GPU's"
        info["power_source"] = "measured: NVML energy counter, instant (field 186) and averaged power"
        try:  # pre-Volta GPUs have no energy counter: say so where the figure's source is read
            lib.nvmlDeviceGetTotalEnergyConsumption(h)
        except lib.NVMLError as e:
            code = getattr(e, "value", None)
            if code == ERROR_GPU_IS_LOST:
                raise
            if code in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                info["power_source"] = (f"measured: NVML instant (field 186) and averaged power; no energy counter "
                                        f"on this GPU (NVML: {e})")
        info["gpm"] = self._gpm_open(dev, h)
        if dev in self._gpm:
            info["gpm_interval_s"] = self.gpm_interval
            info["gpm_t"] = "GPM rows are stamped at the midpoint of their window (mean over the window)"
        return info

    # --- GPM ------------------------------------------------------------------------------------

    def _gpm_open(self, dev: str, h: Any) -> str:
        """Set up GPM for one device; return its status for the metadata. Never raises for a
        missing or unsupported GPM (only for a lost GPU)."""
        if self.gpm is False:
            status = "disabled (gpm=false)"
            self.gpm_status[dev] = status
            return status
        lib = self.nvml
        missing = [n for n in GPM_FUNCTIONS if not hasattr(lib, n)]
        if missing:
            return self._gpm_unsupported(dev, f"the NVML bindings lack {missing[0]} (nvidia-ml-py too old?)")
        from ..formats.gpm_csv import GPM_COLUMN_MAP, GPM_SCALE

        wanted = [(getattr(lib, "NVML_GPM_METRIC_" + name, None), col) for name, col in GPM_COLUMN_MAP.items()]
        wanted = [(mid, col) for mid, col in wanted if mid is not None]
        if not wanted:
            return self._gpm_unsupported(dev, "the NVML bindings define none of the GPM metric ids")
        samples: list[Any] = []
        try:
            support = lib.nvmlGpmQueryDeviceSupport(h)
            if not getattr(support, "isSupportedDevice", 0):
                return self._gpm_unsupported(dev, "the device does not support GPM (Hopper or newer needed)")
            samples.append(lib.nvmlGpmSampleAlloc())
            samples.append(lib.nvmlGpmSampleAlloc())
            request = lib.c_nvmlGpmMetricsGet_t()
            request.version = lib.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(wanted)
            for i, (mid, _) in enumerate(wanted):
                request.metrics[i].metricId = mid
            t, m = self._gpm_sample(h, samples[0])
        except lib.NVMLError as e:
            self._gpm_free(samples)
            if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                raise
            return self._gpm_unsupported(dev, f"NVML: {e}")
        self._gpm[dev] = _GpmState(handle=h, prev=samples[0], next=samples[1], t_prev=t, m_prev=m,
                                   request=request, columns=[col for _, col in wanted],
                                   scales=[GPM_SCALE.get(col, 1.0) for _, col in wanted])
        self.gpm_status[dev] = "enabled"
        return "enabled"

    def _gpm_unsupported(self, dev: str, reason: str) -> str:
        status = f"unsupported: {reason}"
        self.gpm_status[dev] = status
        (log.warning if self.gpm else log.debug)("%s: GPM %s", dev, status)
        return status

    def _gpm_sample(self, h: Any, sample: Any) -> tuple[float, float]:
        """Fill ``sample`` now; its wall and monotonic time (midpoints of the call)."""
        clock = self.clock
        w0, m0 = clock.time(), clock.monotonic()
        self.nvml.nvmlGpmSampleGet(h, sample)
        w1, m1 = clock.time(), clock.monotonic()
        return (w0 + w1) / 2.0, (m0 + m1) / 2.0

    def _gpm_free(self, samples: list[Any]) -> None:
        lib = self.nvml
        for s in samples:
            try:
                lib.nvmlGpmSampleFree(s)
            except lib.NVMLError as e:
                log.debug("nvmlGpmSampleFree failed: %s", e)

    def _gpm_drop(self, dev: str) -> None:
        """Stop GPM on ``dev`` (if it had it) and free its two samples."""
        st = self._gpm.pop(dev, None)
        if st is not None:
            self._gpm_free([st.prev, st.next])

    def _gpm_read(self, dev: str) -> dict[str, Any] | None:
        """The GPM row of a window that has lasted ``gpm_interval``, or None (not due, no GPM)."""
        st = self._gpm.get(dev)
        if st is None or self.clock.monotonic() - st.m_prev < self.gpm_interval - 1e-3:
            return None
        lib = self.nvml
        req = st.request
        try:
            t, m = self._gpm_sample(st.handle, st.next)
            req.sample1, req.sample2 = st.prev, st.next
            lib.nvmlGpmMetricsGet(req)
        except lib.NVMLError as e:
            if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                raise
            # GPM is extra: keep the NVML readings, stop GPM on this device and say why.
            self._gpm_drop(dev)
            self.gpm_status[dev] = f"unsupported: failed during the run (NVML: {e})"
            log.warning("%s: GPM stopped: %s", dev, e)
            return None
        row: dict[str, Any] = {"device": dev, "t": (st.t_prev + t) / 2.0}
        for i, col in enumerate(st.columns):
            metric = req.metrics[i]
            value = float(metric.value) * st.scales[i]
            if metric.nvmlReturn == 0 and math.isfinite(value):
                row[col] = value
        st.prev, st.next = st.next, st.prev
        st.t_prev, st.m_prev = t, m
        return row if len(row) > 2 else None

    def _mig_parent(self, lib: Any, mig_uuid: str) -> tuple[int, Any]:
        """The parent GPU (NVML index, handle) of a ``MIG-<uuid>`` entry: MIG slices have no power
        reading of their own."""
        mig = lib.nvmlDeviceGetHandleByUUID(mig_uuid)
        parent = lib.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        return int(lib.nvmlDeviceGetIndex(parent)), parent

    # --- read ------------------------------------------------------------------------------------

    @nvml_errors
    def read(self) -> list[dict[str, Any]]:
        lib = self.nvml
        out: list[dict[str, Any]] = []
        lost: list[tuple[_Device, Exception]] = []
        for d in list(self._reading):
            try:
                gpm_row = self._gpm_read(d.dev)  # before the NVML row: earlier t, and the NVML row stays last
                if gpm_row is not None:
                    out.append(gpm_row)
                row = self._read_device(lib, d)
            except lib.NVMLError as e:
                if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                    self._reading.remove(d)
                    self._gpm_drop(d.dev)
                    lost.append((d, e))
                else:
                    d.errors += 1
                    now = self.clock.monotonic()
                    if d.errors <= 3 or now - d.errors_noted_at >= READ_ERROR_NOTE_S:  # rate-limited
                        d.errors_noted_at = now
                        self._note("device_read_error", d.dev, f"{d.dev}: reading dropped ({d.errors} so far): "
                                   f"NVML: {e}; the other GPUs' readings are kept", dropped=d.errors, reason=str(e))
                continue
            if row is not None:
                out.append(row)
        if lost and not self._reading:  # nothing left: the collector stops (one device_lost event)
            raise DeviceLostError(f"NVML: GPU is lost: {', '.join(d.dev for d, _ in lost)} ({lost[0][1]}); "
                                  "no GPU left to record")
        for d, e in lost:
            rest = ", ".join(x.dev for x in self._reading)
            self._note("device_lost", d.dev, f"{d.dev}: GPU is lost (NVML: {e}); its recording stops here, "
                       f"the other GPUs go on ({rest})", reason=str(e))
        return out

    def _read_device(self, lib: Any, d: _Device) -> dict[str, Any] | None:
        """One GPU's row, stamped just before its reads (the energy counter first: the call takes
        ~2.8 ms on H100; the stamp the recorded traces use, and the one analysis assumes). A metric
        the device cannot give is left out; any other NVML error is raised (the row is dropped)."""
        t0 = self.clock.time()
        row: dict[str, Any] = {"device": d.dev, **self._metric(lib, d, _ENERGY)}
        row.update(self._power_fields(lib, d))
        for m in _METRICS:
            row.update(self._metric(lib, d, m))
        if len(row) == 1:
            return None
        row["t"] = t0
        return row

    def _power_fields(self, lib: Any, d: _Device) -> dict[str, float]:
        wanted = d.fields
        if not wanted:
            return {}
        try:
            values = lib.nvmlDeviceGetFieldValues(d.handle, d.field_ids)
        except lib.NVMLError as e:
            if getattr(e, "value", None) not in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                raise
            for _, col in wanted:
                self._missing(d, (col,), f"nvmlDeviceGetFieldValues answered {e}")
            return {}
        out: dict[str, float] = {}
        for (_, col), fv in zip(wanted, values, strict=True):
            ret = int(fv.nvmlReturn)
            if ret == 0:
                out[col] = _field_value(fv) / 1000.0
            elif ret == ERROR_GPU_IS_LOST:
                raise lib.NVMLError(ret)
            elif ret in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                self._missing(d, (col,), f"NVML field {fv.fieldId} answered {_error_name(lib, ret)}")
            # another per-field error: this reading lacks the value (NaN), the next one may have it
        return out

    def _metric(self, lib: Any, d: _Device, m: _Metric) -> dict[str, float]:
        """``m`` for device ``d``: the first of its functions that the bindings have and the driver
        answers (remembered); {} once the device has been found unable to give it."""
        fn = d.fns.get(m.columns)
        if fn is not None:
            try:
                return m.convert(fn(d.handle, *m.args))
            except lib.NVMLError as e:
                if getattr(e, "value", None) not in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                    raise
                del d.fns[m.columns]  # answered before, refuses now: find out below
        if m.columns in d.missing:
            return {}
        i = d.choice.get(m.columns, 0)
        tried = []
        while i < len(m.functions):
            name = m.functions[i]
            fn = getattr(lib, name, None)
            if fn is None:
                tried.append(f"{name}: not in the NVML bindings (nvidia-ml-py)")
            else:
                try:
                    value = fn(d.handle, *m.args)
                except lib.NVMLError as e:
                    code = getattr(e, "value", None)
                    if code == ERROR_NOT_SUPPORTED:
                        self._missing(d, m.columns, f"{name} answered Not Supported"
                                      + (" (GPU in MIG mode?)" if "Utilization" in name else ""))
                        return {}
                    if code != ERROR_FUNCTION_NOT_FOUND:
                        raise
                    tried.append(f"{name}: not in this driver (Function Not Found)")
                else:
                    d.choice[m.columns] = i
                    d.fns[m.columns] = fn
                    return m.convert(value)
            i += 1
        self._missing(d, m.columns, "; ".join(tried))
        return {}

    def _missing(self, d: _Device, columns: tuple[str, ...], reason: str) -> None:
        d.missing[columns] = reason
        d.fields = [(fid, col) for fid, col in d.fields if col not in columns]
        d.field_ids = [fid for fid, _ in d.fields]
        self._note("metric_missing", d.dev, f"{d.dev}: {', '.join(columns)} not recorded: {reason}",
                   metrics=list(columns), reason=reason)

    def options(self) -> dict[str, Any]:
        return {"gpm": "auto" if self.gpm is None else self.gpm, "gpm_interval": self.gpm_interval}

    def _release(self, *, strict: bool = False) -> None:
        """Free every GPM sample and shut NVML down (what open() took). A failed shutdown raises
        :class:`CollectorError` with ``strict`` (close()), else is only logged (a failed open())."""
        self._open = False
        self._reading = []
        for dev in list(self._gpm):
            self._gpm_drop(dev)
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError as e:
            if strict:
                raise CollectorError(f"NVML shutdown failed: {e}") from None
            log.debug("nvmlShutdown failed: %s", e)

    def close(self) -> None:
        if self._open:
            self._release(strict=True)


def _error_name(lib: Any, code: int) -> str:
    return str(lib.NVMLError(code))


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- replay backend ------------------------------------------------------------------------------


class ReplayNVMLError(Exception):
    """Stands in for pynvml.NVMLError; ``value`` is the NVML return code."""

    def __init__(self, value: int, msg: str = "") -> None:
        super().__init__(msg or f"NVML error {value}")
        self.value = value


#: pynvml's ids (``NVML_GPM_METRIC_<NAME>``, nvidia-ml-py's pynvml.py) of the GPM metrics a gpm-csv
#: file can hold, i.e. the keys of ``GPM_COLUMN_MAP``; a test checks them against pynvml.
GPM_METRIC_IDS: dict[str, int] = {
    "SM_UTIL": 2, "SM_OCCUPANCY": 3, "ANY_TENSOR_UTIL": 5, "DRAM_BW_UTIL": 10,
    "PCIE_TX_PER_SEC": 20, "PCIE_RX_PER_SEC": 21, "NVLINK_TOTAL_RX_PER_SEC": 60, "NVLINK_TOTAL_TX_PER_SEC": 61,
}
#: pynvml ``NVML_GPM_METRIC_MAX``: the length of ``c_nvmlGpmMetricsGet_t.metrics``.
GPM_METRIC_MAX = 477
GPM_METRICS_GET_VERSION = 1  # pynvml NVML_GPM_METRICS_GET_VERSION


class ReplayGpmSample:
    """Stands in for pynvml's opaque ``c_nvmlGpmSample_t``: the trace time of its SampleGet."""

    __slots__ = ("t", "handle", "freed")

    def __init__(self) -> None:
        self.t: float | None = None
        self.handle: int | None = None
        self.freed = False


class ReplayGpmMetric:
    """Stands in for pynvml's ``c_nvmlGpmMetric_t`` (metricId, nvmlReturn, value)."""

    __slots__ = ("metricId", "nvmlReturn", "value")

    def __init__(self) -> None:
        self.metricId = 0  # noqa: N815 - pynvml's field names
        self.nvmlReturn = 0  # noqa: N815
        self.value = 0.0


class ReplayGpmMetricsGet:
    """Stands in for pynvml's ``c_nvmlGpmMetricsGet_t``: version, numMetrics, sample1, sample2 and a
    fixed array of :data:`GPM_METRIC_MAX` metrics."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0  # noqa: N815
        self.sample1: ReplayGpmSample | None = None
        self.sample2: ReplayGpmSample | None = None
        self.metrics = [ReplayGpmMetric() for _ in range(GPM_METRIC_MAX)]


@dataclass
class _GpmTrack:
    """One GPU's recorded GPM windows as cumulative integrals over one loop of the NVML trace.

    ``x``: window edges (start, end, start, end... non-decreasing); ``fv``/``fc``: cumulative
    integral of each metric (value x seconds) and of its covered seconds at ``x`` (rows), per
    metric (columns). Both are linear between edges, so a mean over [a, b] is two lookups."""

    t0: float
    period: float
    x: np.ndarray
    fv: np.ndarray
    fc: np.ndarray
    column_of_id: dict[int, int]
    has_data: np.ndarray  # per metric: any recorded value at all

    def cumulative(self, p: float) -> tuple[np.ndarray, np.ndarray]:
        loops = max(math.floor((p - self.t0) / self.period), 0) if self.period > 0 else 0
        r = p - loops * self.period
        i = int(np.searchsorted(self.x, r, side="right"))
        if i == 0:
            v, c = np.zeros(self.fv.shape[1]), np.zeros(self.fc.shape[1])
        elif i >= len(self.x):
            v, c = self.fv[-1], self.fc[-1]
        else:
            x0, x1 = self.x[i - 1], self.x[i]
            f = (r - x0) / (x1 - x0) if x1 > x0 else 0.0
            v = self.fv[i - 1] + f * (self.fv[i] - self.fv[i - 1])
            c = self.fc[i - 1] + f * (self.fc[i] - self.fc[i - 1])
        return v + loops * self.fv[-1], c + loops * self.fc[-1]


def _gpm_track(windows: np.ndarray, values: np.ndarray, column_of_id: dict[int, int], t0: float,
               period: float) -> _GpmTrack:
    """Build a :class:`_GpmTrack` from windows ``(n, 2)`` and values ``(n, m)`` (NaN = no value)."""
    order = np.argsort(windows[:, 0], kind="stable")
    s, e, v = windows[order, 0], windows[order, 1], values[order]
    e = np.maximum(np.minimum(e, np.append(s[1:], np.inf)), s)  # overlapping windows: the later wins
    if period > 0:
        s, e = np.clip(s, t0, t0 + period), np.clip(e, t0, t0 + period)
    w = (e - s)[:, None]
    ok = np.isfinite(v)
    vw = np.where(ok, v, 0.0) * w
    cw = ok * w
    cum_v, cum_c = np.cumsum(vw, axis=0), np.cumsum(cw, axis=0)
    x = np.column_stack([s, e]).ravel()
    fv = np.stack([cum_v - vw, cum_v], axis=1).reshape(-1, v.shape[1])
    fc = np.stack([cum_c - cw, cum_c], axis=1).reshape(-1, v.shape[1])
    return _GpmTrack(t0=t0, period=period, x=x, fv=fv, fc=fc, column_of_id=column_of_id,
                     has_data=ok.any(axis=0))


def _read_gpm_windows(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A gpm-csv file: its samples (:func:`read_gpm_csv`, validated) and, row for row, the
    recorded window bounds ``(n, 2)`` [t_start, t_end] that the samples' midpoints stand for."""
    import pandas as pd

    from ..formats.gpm_csv import GPU_COLUMNS, TIME_COLUMNS, read_gpm_csv
    from ..schema import DEVICE, T

    samples = read_gpm_csv(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    t_start, t_end = (pd.to_numeric(raw[c].str.strip()).to_numpy(dtype=float) for c in TIME_COLUMNS)
    bounds = pd.DataFrame({T: (t_start + t_end) / 2.0, "t_start": t_start, "t_end": t_end})
    gpu_col = next((c for c in GPU_COLUMNS if c in raw.columns), None)
    if gpu_col:
        bounds[DEVICE] = "gpu:" + pd.to_numeric(raw[gpu_col].str.strip()).astype("int64").astype(str)
    else:
        bounds[DEVICE] = samples[DEVICE].iloc[0]
    bounds = bounds.sort_values([DEVICE, T], kind="stable").reset_index(drop=True)  # read_gpm_csv's order
    if not (np.array_equal(bounds[T].to_numpy(), samples[T].to_numpy())
            and (bounds[DEVICE] == samples[DEVICE]).all()):
        raise InputError("gpm-csv windows could not be matched to their samples", path=str(path))
    return samples, bounds[["t_start", "t_end"]].to_numpy(dtype=float)


@dataclass
class _Gpu:
    uuid: str
    name: str
    power_limit_mw: int
    t: np.ndarray
    cols: dict[str, np.ndarray]
    energy_span_mj: float


class ReplayNvml:
    """An NVML stand-in that serves a recorded ``nvml-trace-csv`` trace on a clock.

    ``start="open"`` maps the clock's time at ``nvmlInit`` to the trace's first sample (live use:
    ``wattprof record --collector nvml-replay``); ``start="trace"`` means the clock already runs in
    the trace's own time (``wattprof demo`` and ``wattprof import``). Past the end the trace
    loops, with the energy counter still increasing. ``devices=N`` replays GPU 0 as N GPUs.

    ``gpm_trace`` (a ``gpm-csv`` file from the same capture, same wall clock) adds NVML GPM:
    ``nvmlGpmMetricsGet`` over two samples returns, per metric, the time-weighted mean of the
    recorded GPM windows overlapping the two samples' times (looping with the NVML trace); a
    window with no recorded data gives ``NVML_ERROR_NO_DATA`` for the metric. GPUs are matched by
    the file's ``gpu`` column, or all replay its single GPU. Without ``gpm_trace``,
    ``nvmlGpmQueryDeviceSupport`` reports the devices as not GPM-capable (as on pre-Hopper GPUs).
    The structures mimic pynvml's (``c_nvmlGpmMetricsGet_t``, ``metrics[i].metricId/.value/
    .nvmlReturn``), so the collector's code path is the one it runs on real NVML.
    """

    NVMLError = ReplayNVMLError
    NVML_CLOCK_SM = CLOCK_SM
    NVML_CLOCK_MEM = CLOCK_MEM
    NVML_TEMPERATURE_GPU = TEMPERATURE_GPU
    NVML_GPM_METRICS_GET_VERSION = GPM_METRICS_GET_VERSION
    NVML_GPM_METRIC_MAX = GPM_METRIC_MAX
    NVML_GPM_METRIC_SM_UTIL = GPM_METRIC_IDS["SM_UTIL"]
    NVML_GPM_METRIC_SM_OCCUPANCY = GPM_METRIC_IDS["SM_OCCUPANCY"]
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = GPM_METRIC_IDS["ANY_TENSOR_UTIL"]
    NVML_GPM_METRIC_DRAM_BW_UTIL = GPM_METRIC_IDS["DRAM_BW_UTIL"]
    NVML_GPM_METRIC_PCIE_TX_PER_SEC = GPM_METRIC_IDS["PCIE_TX_PER_SEC"]
    NVML_GPM_METRIC_PCIE_RX_PER_SEC = GPM_METRIC_IDS["PCIE_RX_PER_SEC"]
    NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC = GPM_METRIC_IDS["NVLINK_TOTAL_RX_PER_SEC"]
    NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC = GPM_METRIC_IDS["NVLINK_TOTAL_TX_PER_SEC"]
    c_nvmlGpmMetricsGet_t = ReplayGpmMetricsGet  # noqa: N815 - pynvml's name

    def __init__(self, trace: str | Path, *, clock: Clock = SYSTEM_CLOCK, start: str = "open",
                 devices: int | None = None, gpm_trace: str | Path | None = None) -> None:
        from ..formats.nvml_trace import read_nvml_trace

        if start not in ("open", "trace"):
            raise InputError(f"replay start must be 'open' or 'trace', not {start!r}")
        self.trace = read_nvml_trace(trace)
        self.clock = clock
        self.start = start
        self._offset = 0.0
        self._inits = 0
        self.lost: set[int] = set()  # indices whose GPU "fell off the bus" (tests of device loss)
        self._row_cache: dict[int, tuple[float, float, int, int]] = {}  # h -> (t from, t to, row, loop)
        info = self.trace.info
        base = sorted(self.trace.gpus.items())
        if devices is not None:
            base = [(i, base[0][1]) for i in range(int(devices))]
        self._gpus = []
        for i, df in base:
            cols = {c: df[c].to_numpy(dtype=float) for c in df.columns if c != "t"}
            e = cols.get("energy_mj")
            span = float(e[-1] - e[0]) if e is not None and len(e) > 1 else 0.0
            uuid = str(info.get("uuid", "GPU-00000000-0000-0000-0000-000000000000"))
            if len(base) > 1:
                uuid = f"{uuid[:-4]}{i:04x}"
            self._gpus.append(_Gpu(uuid=uuid, name=str(info.get("name", "replayed NVIDIA GPU")),
                                   power_limit_mw=int(info.get("enforced_limit_mw", info.get("power_limit_mw", 0)) or 0),
                                   t=df["t"].to_numpy(dtype=float), cols=cols, energy_span_mj=span))
        self.gpm_trace = Path(gpm_trace) if gpm_trace is not None else None
        self._gpm_tracks: dict[int, _GpmTrack] = {}
        #: GPM samples allocated and not yet freed (tests check that the collector frees them).
        self.gpm_samples_live = 0
        if self.gpm_trace is not None:
            self._load_gpm(self.gpm_trace)

    def _load_gpm(self, path: Path) -> None:
        from ..formats.gpm_csv import GPM_COLUMN_MAP, GPM_SCALE
        from ..schema import DEVICE

        samples, bounds = _read_gpm_windows(path)
        names = [n for n, col in GPM_COLUMN_MAP.items() if col in samples.columns]
        column_of_id = {GPM_METRIC_IDS[n]: j for j, n in enumerate(names)}
        by_device = {str(d): np.flatnonzero((samples[DEVICE] == d).to_numpy()) for d in samples[DEVICE].unique()}
        for h, g in enumerate(self._gpus):
            rows = by_device.get(f"gpu:{h}")
            if rows is None and len(by_device) == 1:
                rows = next(iter(by_device.values()))
            if rows is None:
                continue  # this GPU has no GPM data: replayed as not GPM-capable
            period = g.t[-1] - g.t[0] + (g.t[-1] - g.t[-2] if len(g.t) > 1 else 1.0)  # as _row loops
            values = samples.iloc[rows][[GPM_COLUMN_MAP[n] for n in names]].to_numpy(dtype=float)
            # served in NVML's units (MiB/s for the *_PER_SEC metrics), as the capture recorded them
            values = values / np.array([GPM_SCALE.get(GPM_COLUMN_MAP[n], 1.0) for n in names])
            self._gpm_tracks[h] = _gpm_track(bounds[rows], values, column_of_id, float(g.t[0]), float(period))

    # lifecycle
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.start == "open" and self._inits == 0:
            self._offset = self.trace.t_first - self.clock.time()
        self._inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        if self._inits <= 0:
            raise ReplayNVMLError(1, "NVML not initialised")
        self._inits -= 1

    def _check(self) -> None:
        if self._inits <= 0:
            raise ReplayNVMLError(1, "Uninitialized")

    # devices
    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._check()
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        self._check()
        if not 0 <= i < len(self._gpus):
            raise ReplayNVMLError(2, "Invalid Argument")
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:  # noqa: N802
        for i, g in enumerate(self._gpus):
            if g.uuid == uuid:
                return i
        raise ReplayNVMLError(6, "Not Found")

    def nvmlDeviceGetIndex(self, h: int) -> int:  # noqa: N802
        self._device(h)
        return h

    def nvmlDeviceGetUUID(self, h: int) -> str:  # noqa: N802
        return self._gpus[h].uuid

    def nvmlDeviceGetName(self, h: int) -> str:  # noqa: N802
        return self._gpus[h].name

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:  # noqa: N802
        if not self._gpus[h].power_limit_mw:
            raise ReplayNVMLError(ERROR_NOT_SUPPORTED, "Not Supported")
        return self._gpus[h].power_limit_mw

    # readings
    def _row(self, h: int) -> tuple[_Gpu, int, int]:
        self._check()
        if h in self.lost:
            raise ReplayNVMLError(ERROR_GPU_IS_LOST, "GPU is lost")
        g = self._gpus[h]
        now = self.clock.time() + self._offset
        hit = self._row_cache.get(h)
        if hit is not None and hit[0] <= now < hit[1]:  # the calls of one reading hit the same trace row
            return g, hit[2], hit[3]
        t = g.t
        span = t[-1] - t[0] + (t[-1] - t[-2] if len(t) > 1 else 1.0)
        loops = int((now - t[0]) // span) if now >= t[0] else 0
        r = now - loops * span
        i = int(np.searchsorted(t, r, side="right")) - 1
        if i >= 0:  # the row serves [t[i], t[i + 1]) of this loop
            end = t[i + 1] if i + 1 < len(t) else t[0] + span
            self._row_cache[h] = (float(t[i] + loops * span), float(end + loops * span), i, loops)
        return g, max(i, 0), loops

    def _value(self, h: int, col: str) -> float:
        g, i, _ = self._row(h)
        if col not in g.cols or np.isnan(g.cols[col][i]):
            raise ReplayNVMLError(ERROR_NOT_SUPPORTED, "Not Supported")
        return float(g.cols[col][i])

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:  # noqa: N802
        g, i, loops = self._row(h)
        return int(g.cols["energy_mj"][i] + loops * g.energy_span_mj)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:  # noqa: N802
        return int(self._value(h, "power_usage_mw"))

    def nvmlDeviceGetFieldValues(self, h: int, field_ids: list[int]) -> list[SimpleNamespace]:  # noqa: N802
        col = {FI_POWER_INSTANT: "power_instant_mw", FI_POWER_AVERAGE: "power_average_mw"}
        out = []
        for fid in field_ids:
            try:
                v, ret = int(self._value(h, col[fid])) if fid in col else 0, 0 if fid in col else 3
            except ReplayNVMLError as e:
                if e.value == ERROR_GPU_IS_LOST:
                    raise
                v, ret = 0, e.value
            out.append(SimpleNamespace(fieldId=fid, nvmlReturn=ret, value=SimpleNamespace(uiVal=v),
                                       timestamp=int(self.clock.time() * 1e6)))
        return out

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=int(self._value(h, "util_gpu")), memory=int(self._value(h, "util_mem")))

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=int(self._value(h, "mem_used_b")), total=80 * 2**30, free=0)

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:  # noqa: N802
        return int(self._value(h, "clock_sm_mhz" if kind == CLOCK_SM else "clock_mem_mhz"))

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:  # noqa: N802
        return int(self._value(h, "temp_c"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:  # noqa: N802
        return int(self._value(h, "clocks_event_reasons"))

    # GPM
    def _device(self, h: int) -> None:
        self._check()
        if not isinstance(h, int) or not 0 <= h < len(self._gpus):
            raise ReplayNVMLError(ERROR_INVALID_ARGUMENT, "Invalid Argument")
        if h in self.lost:
            raise ReplayNVMLError(ERROR_GPU_IS_LOST, "GPU is lost")

    def nvmlGpmQueryDeviceSupport(self, h: int) -> SimpleNamespace:  # noqa: N802
        self._device(h)
        return SimpleNamespace(version=1, isSupportedDevice=int(h in self._gpm_tracks))

    def nvmlGpmSampleAlloc(self) -> ReplayGpmSample:  # noqa: N802
        self._check()
        self.gpm_samples_live += 1
        return ReplayGpmSample()

    def nvmlGpmSampleFree(self, sample: ReplayGpmSample) -> None:  # noqa: N802
        if not isinstance(sample, ReplayGpmSample) or sample.freed:
            raise ReplayNVMLError(ERROR_INVALID_ARGUMENT, "Invalid Argument")
        sample.freed = True
        self.gpm_samples_live -= 1

    def nvmlGpmSampleGet(self, h: int, sample: ReplayGpmSample) -> ReplayGpmSample:  # noqa: N802
        self._device(h)
        if h not in self._gpm_tracks:
            raise ReplayNVMLError(ERROR_NOT_SUPPORTED, "Not Supported")
        if not isinstance(sample, ReplayGpmSample) or sample.freed:
            raise ReplayNVMLError(ERROR_INVALID_ARGUMENT, "Invalid Argument")
        sample.t = self.clock.time() + self._offset
        sample.handle = h
        return sample

    def nvmlGpmMetricsGet(self, request: ReplayGpmMetricsGet) -> ReplayGpmMetricsGet:  # noqa: N802
        self._check()
        if getattr(request, "version", None) != GPM_METRICS_GET_VERSION:
            raise ReplayNVMLError(ERROR_ARGUMENT_VERSION_MISMATCH, "Argument Version Mismatch")
        s1, s2 = request.sample1, request.sample2
        if not all(isinstance(s, ReplayGpmSample) and not s.freed and s.t is not None for s in (s1, s2)) \
                or s1.handle != s2.handle or not 0 < request.numMetrics <= GPM_METRIC_MAX:  # type: ignore[union-attr]
            raise ReplayNVMLError(ERROR_INVALID_ARGUMENT, "Invalid Argument")
        h = int(s1.handle)  # type: ignore[union-attr, arg-type]
        self._device(h)
        track = self._gpm_tracks[h]
        a, b = sorted((float(s1.t), float(s2.t)))  # type: ignore[union-attr, arg-type]
        v1, c1 = track.cumulative(a)
        v2, c2 = track.cumulative(b)
        covered = c2 - c1
        for metric in request.metrics[:request.numMetrics]:
            j = track.column_of_id.get(int(metric.metricId))
            if j is None or not track.has_data[j]:
                metric.nvmlReturn, metric.value = ERROR_NOT_SUPPORTED, 0.0
            elif covered[j] <= 1e-9:
                metric.nvmlReturn, metric.value = ERROR_NO_DATA, 0.0
            else:
                metric.nvmlReturn, metric.value = 0, float((v2[j] - v1[j]) / covered[j])
        return request


def default_trace() -> Path:
    from ..data import path

    return path("nvml_samples_10ms.csv")


class NvmlReplayCollector(NvmlCollector):
    """The NVML collector fed by :class:`ReplayNvml`:
    ``nvml-replay[:trace=FILE,gpm_trace=FILE,devices=N,start=open,gpm=auto,gpm_interval=0.5]``.

    Without ``trace`` it replays the real H100 capture shipped with wattprof; ``gpm_trace`` (a
    gpm-csv file of the same capture) adds GPM activity, otherwise the replayed GPUs have none."""

    name = "nvml-replay"

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, trace: str | None = None, start: str = "open",
                 devices: int | None = None, gpm_trace: str | None = None, gpm: bool | str | None = None,
                 gpm_interval: float = GPM_MIN_INTERVAL_S) -> None:
        self.trace_path = Path(trace) if trace else default_trace()
        self.gpm_trace_path = Path(gpm_trace) if gpm_trace else None
        self._start = start
        self._devices = devices
        super().__init__(clock=clock, nvml=None, gpm=gpm, gpm_interval=gpm_interval)

    @property
    def nvml(self) -> Any:
        if self._nvml is None:
            self._nvml = ReplayNvml(self.trace_path, clock=self.clock, start=self._start, devices=self._devices,
                                    gpm_trace=self.gpm_trace_path)
        return self._nvml

    def available(self) -> tuple[bool, str]:
        if not self.trace_path.is_file():
            return False, f"trace file {self.trace_path} not found"
        if self.gpm_trace_path is not None and not self.gpm_trace_path.is_file():
            return False, f"GPM trace file {self.gpm_trace_path} not found"
        return True, f"replays {self.trace_path.name} (recorded trace, not this machine's GPU)"

    def open(self) -> dict[str, dict]:
        devices = super().open()
        for dev, info in devices.items():
            info["replayed_from"] = str(self.trace_path)
            info["power_source"] = "replayed NVML trace (energy counter, instant and averaged power)"
            if dev in self._gpm:
                info["gpm_replayed_from"] = str(self.gpm_trace_path)
            elif self.gpm_trace_path is None and self.gpm is not False:
                info["gpm"] = self.gpm_status[dev] = "unsupported: replayed trace without GPM data (no gpm_trace)"
        return devices

    def options(self) -> dict[str, Any]:
        return {"trace": str(self.trace_path), "start": self._start, "devices": self._devices,
                "gpm_trace": str(self.gpm_trace_path) if self.gpm_trace_path else None, **super().options()}

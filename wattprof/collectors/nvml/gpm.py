"""NVML GPM activity (Hopper and newer; REFERENCE.md): SM activity and occupancy, tensor and DRAM
activity, PCIe and NVLink rates (:data:`wattprof.formats.gpm_csv.GPM_COLUMN_MAP`).

Where the device supports it, :class:`GpmSampler` keeps two GPM samples per GPU and, at most every
``interval`` seconds (default and minimum 0.5 s), takes the next one and computes the metrics over
the window between the two (``nvmlGpmMetricsGet``). Each window becomes a **separate row** for the
device, holding only the GPM columns and stamped at the window's **midpoint**: a GPM value at ``t``
is the mean over ``[t - d/2, t + d/2]`` (``d`` the window, ~``interval``), the same convention as
the ``gpm-csv`` importer (:mod:`wattprof.formats.gpm_csv`). A device without GPM (not Hopper+, a
driver or nvidia-ml-py without the GPM functions, NVML "Not Supported") gets a status
``"unsupported: <reason>"`` and is measured without it; never an error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from ...clock import Clock
from ...errors import InputError
from .codes import ERROR_GPU_IS_LOST

log = logging.getLogger(__name__)

#: Shortest GPM window the collector takes (seconds): the cadence of the real H100 GPM capture
#: (``fixtures/nvidia-h100-gpm``); shorter windows only add NVML calls under the driver lock.
GPM_MIN_INTERVAL_S = 0.5
#: pynvml's GPM functions the collector needs (absent in old nvidia-ml-py: GPM is unsupported).
GPM_FUNCTIONS = ("nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet",
                 "nvmlGpmSampleFree", "nvmlGpmMetricsGet", "c_nvmlGpmMetricsGet_t",
                 "NVML_GPM_METRICS_GET_VERSION")
#: The GPM columns (the values of :data:`wattprof.formats.gpm_csv.GPM_COLUMN_MAP`, spelled out so
#: that importing the collector does not import pandas; a test keeps the two equal).
GPM_COLUMNS = ("sm_active_pct", "sm_occupancy_pct", "tensor_active_pct", "dram_active_pct",
               "pcie_tx_mbps", "pcie_rx_mbps", "nvlink_tx_mbps", "nvlink_rx_mbps")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def gpm_option(value: Any) -> bool | None:
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


def gpm_interval_option(value: Any) -> float:
    """``gpm_interval`` option: seconds, raised to :data:`GPM_MIN_INTERVAL_S`."""
    try:
        interval = float(value)
    except (TypeError, ValueError):
        raise InputError(f"gpm_interval must be a number of seconds, not {value!r}") from None
    if not math.isfinite(interval) or interval <= 0:
        raise InputError(f"gpm_interval must be a positive number of seconds, not {value!r}")
    return max(interval, GPM_MIN_INTERVAL_S)


@dataclass
class GpmState:
    """One GPU's GPM bookkeeping: ``prev`` holds the window's start, ``next`` is filled at its end."""

    handle: Any
    prev: Any
    next: Any
    t_prev: float  # wall time of prev (clock.time())
    m_prev: float  # monotonic time of prev (schedules the next window)
    request: Any  # the library's c_nvmlGpmMetricsGet_t, metric ids set once
    columns: list[str]  # schema column of request.metrics[i]
    scales: list[float]  # request.metrics[i].value x scale = the schema unit (MiB/s -> MB/s)


class GpmSampler:
    """GPM windows of the GPUs one collector reads. ``mode``: :func:`gpm_option`'s value.

    Every method takes the NVML library ``lib`` (the collector's, injected or imported lazily)."""

    def __init__(self, clock: Clock, *, mode: bool | None, interval: float) -> None:
        self.clock = clock
        self.mode = mode
        self.interval = interval
        self.states: dict[str, GpmState] = {}
        #: Per device: "enabled", "disabled ..." or "unsupported: <reason>" (also in the device
        #: metadata from open(); updated if GPM fails later in the run).
        self.status: dict[str, str] = {}

    def open(self, lib: Any, dev: str, h: Any) -> str:
        """Set up GPM for one device; return its status for the metadata. Never raises for a
        missing or unsupported GPM (only NVML's error for a lost GPU)."""
        if self.mode is False:
            self.status[dev] = "disabled (gpm=false)"
            return self.status[dev]
        missing = [n for n in GPM_FUNCTIONS if not hasattr(lib, n)]
        if missing:
            return self._unsupported(dev, f"the NVML bindings lack {missing[0]} (nvidia-ml-py too old?)")
        from ...formats.gpm_csv import GPM_COLUMN_MAP, GPM_SCALE

        wanted = [(getattr(lib, "NVML_GPM_METRIC_" + name, None), col) for name, col in GPM_COLUMN_MAP.items()]
        wanted = [(mid, col) for mid, col in wanted if mid is not None]
        if not wanted:
            return self._unsupported(dev, "the NVML bindings define none of the GPM metric ids")
        samples: list[Any] = []
        try:
            support = lib.nvmlGpmQueryDeviceSupport(h)
            if not getattr(support, "isSupportedDevice", 0):
                return self._unsupported(dev, "the device does not support GPM (Hopper or newer needed)")
            samples.append(lib.nvmlGpmSampleAlloc())
            samples.append(lib.nvmlGpmSampleAlloc())
            request = lib.c_nvmlGpmMetricsGet_t()
            request.version = lib.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(wanted)
            for i, (mid, _) in enumerate(wanted):
                request.metrics[i].metricId = mid
            t, m = self._sample(lib, h, samples[0])
        except lib.NVMLError as e:
            self._free(lib, samples)
            if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                raise
            return self._unsupported(dev, f"NVML: {e}")
        self.states[dev] = GpmState(handle=h, prev=samples[0], next=samples[1], t_prev=t, m_prev=m,
                                    request=request, columns=[col for _, col in wanted],
                                    scales=[GPM_SCALE.get(col, 1.0) for _, col in wanted])
        self.status[dev] = "enabled"
        return "enabled"

    def _unsupported(self, dev: str, reason: str) -> str:
        status = f"unsupported: {reason}"
        self.status[dev] = status
        (log.warning if self.mode else log.debug)("%s: GPM %s", dev, status)
        return status

    def _sample(self, lib: Any, h: Any, sample: Any) -> tuple[float, float]:
        """Fill ``sample`` now; its wall and monotonic time (midpoints of the call)."""
        clock = self.clock
        w0, m0 = clock.time(), clock.monotonic()
        lib.nvmlGpmSampleGet(h, sample)
        w1, m1 = clock.time(), clock.monotonic()
        return (w0 + w1) / 2.0, (m0 + m1) / 2.0

    @staticmethod
    def _free(lib: Any, samples: list[Any]) -> None:
        for s in samples:
            try:
                lib.nvmlGpmSampleFree(s)
            except lib.NVMLError as e:
                log.debug("nvmlGpmSampleFree failed: %s", e)

    def drop(self, lib: Any, dev: str) -> None:
        """Stop GPM on ``dev`` (if it had it) and free its two samples."""
        st = self.states.pop(dev, None)
        if st is not None:
            self._free(lib, [st.prev, st.next])

    def drop_all(self, lib: Any) -> None:
        for dev in list(self.states):
            self.drop(lib, dev)

    def read(self, lib: Any, dev: str) -> dict[str, Any] | None:
        """The GPM row of a window that has lasted ``interval``, or None (not due, no GPM)."""
        st = self.states.get(dev)
        if st is None or self.clock.monotonic() - st.m_prev < self.interval - 1e-3:
            return None
        req = st.request
        try:
            t, m = self._sample(lib, st.handle, st.next)
            req.sample1, req.sample2 = st.prev, st.next
            lib.nvmlGpmMetricsGet(req)
        except lib.NVMLError as e:
            if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                raise
            # GPM is extra: keep the NVML readings, stop GPM on this device and say why.
            self.drop(lib, dev)
            self.status[dev] = f"unsupported: failed during the run (NVML: {e})"
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

"""The NVML replay backend: :class:`ReplayNvml` has pynvml's functions and serves a recorded
``nvml-trace-csv`` capture (and optionally its ``gpm-csv``) on the collector's clock, so the
collector's own code path runs in tests, in ``wattprof demo`` and on a GPU unchanged;
:class:`NvmlReplayCollector` is the NVML collector fed by it (``nvml-replay``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ...clock import SYSTEM_CLOCK, Clock
from ...errors import InputError
from .codes import (
    CLOCK_MEM,
    CLOCK_SM,
    ERROR_ARGUMENT_VERSION_MISMATCH,
    ERROR_GPU_IS_LOST,
    ERROR_INVALID_ARGUMENT,
    ERROR_NO_DATA,
    ERROR_NOT_SUPPORTED,
    FI_POWER_AVERAGE,
    FI_POWER_INSTANT,
    TEMPERATURE_GPU,
)
from .collector import NvmlCollector
from .gpm import GPM_MIN_INTERVAL_S
from .replay_gpm import (
    GPM_METRIC_IDS,
    GPM_METRIC_MAX,
    GPM_METRICS_GET_VERSION,
    GpmTrack,
    ReplayGpmMetricsGet,
    ReplayGpmSample,
    gpm_track,
    read_gpm_windows,
)


class ReplayNVMLError(Exception):
    """Stands in for pynvml.NVMLError; ``value`` is the NVML return code."""

    def __init__(self, value: int, msg: str = "") -> None:
        super().__init__(msg or f"NVML error {value}")
        self.value = value


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
        from ...formats.nvml_trace import read_nvml_trace

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
        self._gpm_tracks: dict[int, GpmTrack] = {}
        #: GPM samples allocated and not yet freed (tests check that the collector frees them).
        self.gpm_samples_live = 0
        if self.gpm_trace is not None:
            self._load_gpm(self.gpm_trace)

    def _load_gpm(self, path: Path) -> None:
        from ...formats.gpm_csv import GPM_COLUMN_MAP, GPM_SCALE
        from ...schema import DEVICE

        samples, bounds = read_gpm_windows(path)
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
            self._gpm_tracks[h] = gpm_track(bounds[rows], values, column_of_id, float(g.t[0]), float(period))

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
    from ...data import path

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
            if dev in self._gpm.states:
                info["gpm_replayed_from"] = str(self.gpm_trace_path)
            elif self.gpm_trace_path is None and self.gpm is not False:
                info["gpm"] = self.gpm_status[dev] = "unsupported: replayed trace without GPM data (no gpm_trace)"
        return devices

    def options(self) -> dict[str, Any]:
        return {"trace": str(self.trace_path), "start": self._start, "devices": self._devices,
                "gpm_trace": str(self.gpm_trace_path) if self.gpm_trace_path else None, **super().options()}

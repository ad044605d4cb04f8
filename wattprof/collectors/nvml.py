"""NVIDIA GPUs through NVML (nvidia-ml-py, module ``pynvml``).

Per GPU and sample: the energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since driver
load), instant power (field 186) and averaged power (``nvmlDeviceGetPowerUsage`` = field 185, a
1 s trailing mean on Ampere+), utilisation, memory used, SM clock, temperature and clock-event
reasons. Facts and costs: REFERENCE.md ("NVIDIA: NVML and nvidia-smi").

The NVML library is injected: :class:`NvmlCollector` takes any object with pynvml's functions.
:class:`ReplayNvml` is such an object that plays back a recorded ``nvml-trace-csv`` on the
collector's clock, so the same code path runs on a GPU, in tests and in ``wattprof demo``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, DeviceLostError, InputError
from .base import Collector

FI_POWER_AVERAGE = 185  # NVML_FI_DEV_POWER_AVERAGE
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
CLOCK_SM = 1  # NVML_CLOCK_SM
CLOCK_MEM = 2  # NVML_CLOCK_MEM
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
ERROR_NOT_SUPPORTED = 3
ERROR_GPU_IS_LOST = 15

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


class NvmlCollector(Collector):
    name = "nvml"
    metrics = ("energy_j", "power_w", "power_avg_w", "util_pct", "mem_util_pct", "mem_used_bytes",
               "sm_clock_mhz", "temp_c", "throttle_reasons")

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, nvml: Any = None) -> None:
        super().__init__(clock=clock)
        self._nvml = nvml
        self._handles: list[tuple[str, Any]] = []
        self._open = False

    @property
    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

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
        finally:
            lib.nvmlShutdown()
        if n == 0:
            return False, "NVML found no GPU"
        return True, f"{n} GPU(s) via NVML"

    @nvml_errors
    def open(self) -> dict[str, dict]:
        lib = self.nvml
        lib.nvmlInit()
        self._open = True
        count = lib.nvmlDeviceGetCount()
        handles = [lib.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_str(lib.nvmlDeviceGetUUID(h)) for h in handles]
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        selected = parse_visible_devices(env, uuids)
        mig_entries = [e.strip() for e in (env or "").split(",") if e.strip().startswith("MIG-")]
        devices: dict[str, dict] = {}
        mig_i = 0
        for cuda_index, (idx, is_mig) in enumerate(selected):
            if is_mig:
                idx = self._mig_parent_index(mig_entries[mig_i], handles)
                mig_i += 1
            dev = f"gpu:{idx}"
            if dev in devices:
                devices[dev]["shared"] = True
                continue
            h = handles[idx]
            info: dict[str, Any] = {
                "kind": "gpu", "vendor": "nvidia", "name": _str(lib.nvmlDeviceGetName(h)), "uuid": uuids[idx],
                "nvml_index": idx, "cuda_index": cuda_index, "collector": self.name,
            }
            try:
                info["power_limit_w"] = lib.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
            except lib.NVMLError:
                info["power_limit_w"] = None
            if is_mig:
                info["shared"] = True
                info["note"] = "MIG slice selected: energy is the whole parent GPU's"
            info["power_source"] = "measured: NVML energy counter, instant (field 186) and averaged power"
            devices[dev] = info
            self._handles.append((dev, h))
        if env is not None and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            for info in devices.values():
                info["cuda_order_note"] = ("CUDA_VISIBLE_DEVICES indices were read in NVML (PCI) order; "
                                           "set CUDA_DEVICE_ORDER=PCI_BUS_ID for the two to agree")
        return devices

    def _mig_parent_index(self, mig_uuid: str, handles: list[Any]) -> int:
        lib = self.nvml
        mig = lib.nvmlDeviceGetHandleByUUID(mig_uuid)
        parent = lib.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        parent_uuid = _str(lib.nvmlDeviceGetUUID(parent))
        for i, h in enumerate(handles):
            if _str(lib.nvmlDeviceGetUUID(h)) == parent_uuid:
                return i
        raise CollectorError(f"MIG device {mig_uuid}: parent GPU not found")

    @nvml_errors
    def read(self) -> list[dict[str, Any]]:
        lib = self.nvml
        reasons_fn = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            lib.nvmlDeviceGetCurrentClocksThrottleReasons
        out = []
        for dev, h in self._handles:
            t0 = self.clock.time()
            energy_mj = lib.nvmlDeviceGetTotalEnergyConsumption(h)
            fv = lib.nvmlDeviceGetFieldValues(h, [FI_POWER_INSTANT, FI_POWER_AVERAGE])
            util = lib.nvmlDeviceGetUtilizationRates(h)
            row = {
                "device": dev,
                "energy_j": energy_mj / 1000.0,
                "power_w": fv[0].value.uiVal / 1000.0 if fv[0].nvmlReturn == 0 else None,
                "power_avg_w": fv[1].value.uiVal / 1000.0 if fv[1].nvmlReturn == 0 else None,
                "util_pct": float(util.gpu),
                "mem_util_pct": float(util.memory),
                "mem_used_bytes": float(lib.nvmlDeviceGetMemoryInfo(h).used),
                "sm_clock_mhz": float(lib.nvmlDeviceGetClockInfo(h, CLOCK_SM)),
                "temp_c": float(lib.nvmlDeviceGetTemperature(h, TEMPERATURE_GPU)),
                "throttle_reasons": float(reasons_fn(h)),
            }
            # Stamped just before the reads, the energy counter first (the call takes ~2.8 ms on
            # H100): the stamp the recorded traces use, and the one analysis assumes.
            row["t"] = t0
            out.append(row)
        return out

    def close(self) -> None:
        if self._open:
            self._open = False
            self._handles = []
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError as e:
                raise CollectorError(f"NVML shutdown failed: {e}") from None


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- replay backend ------------------------------------------------------------------------------


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
    """

    NVMLError = ReplayNVMLError
    NVML_CLOCK_SM = CLOCK_SM
    NVML_CLOCK_MEM = CLOCK_MEM
    NVML_TEMPERATURE_GPU = TEMPERATURE_GPU

    def __init__(self, trace: str | Path, *, clock: Clock = SYSTEM_CLOCK, start: str = "open",
                 devices: int | None = None) -> None:
        from ..formats.nvml_trace import read_nvml_trace

        if start not in ("open", "trace"):
            raise InputError(f"replay start must be 'open' or 'trace', not {start!r}")
        self.trace = read_nvml_trace(trace)
        self.clock = clock
        self.start = start
        self._offset = 0.0
        self._inits = 0
        self.lost: set[int] = set()  # indices whose GPU "fell off the bus" (tests of device loss)
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
        span = g.t[-1] - g.t[0] + (g.t[-1] - g.t[-2] if len(g.t) > 1 else 1.0)
        loops = int((now - g.t[0]) // span) if now >= g.t[0] else 0
        now -= loops * span
        i = int(np.searchsorted(g.t, now, side="right")) - 1
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


def default_trace() -> Path:
    from ..data import path

    return path("nvml_samples_10ms.csv")


class NvmlReplayCollector(NvmlCollector):
    """The NVML collector fed by :class:`ReplayNvml`: ``nvml-replay[:trace=FILE,devices=N,start=open]``.

    Without ``trace`` it replays the real H100 capture shipped with wattprof."""

    name = "nvml-replay"

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, trace: str | None = None, start: str = "open",
                 devices: int | None = None) -> None:
        self.trace_path = Path(trace) if trace else default_trace()
        self._start = start
        self._devices = devices
        super().__init__(clock=clock, nvml=None)

    @property
    def nvml(self) -> Any:
        if self._nvml is None:
            self._nvml = ReplayNvml(self.trace_path, clock=self.clock, start=self._start, devices=self._devices)
        return self._nvml

    def available(self) -> tuple[bool, str]:
        if not self.trace_path.is_file():
            return False, f"trace file {self.trace_path} not found"
        return True, f"replays {self.trace_path.name} (recorded trace, not this machine's GPU)"

    def open(self) -> dict[str, dict]:
        devices = super().open()
        for info in devices.values():
            info["replayed_from"] = str(self.trace_path)
            info["power_source"] = "replayed NVML trace (energy counter, instant and averaged power)"
        return devices

    def options(self) -> dict[str, Any]:
        return {"trace": str(self.trace_path), "start": self._start, "devices": self._devices}

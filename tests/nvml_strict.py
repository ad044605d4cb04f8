"""A strict stand-in for the real ``pynvml`` module, for running the NVML collector in tests.

:class:`StrictNvml` has exactly the installed nvidia-ml-py's surface: a name the real module lacks
is an AttributeError; every call is bound to the real function's signature
(``inspect.signature(real).bind``); handles, GPM samples, field values and GPM requests are the real
ctypes types (``c_nvmlDevice_t``, ``c_nvmlGpmSample_t``, arrays of ``c_nvmlFieldValue_t``,
``c_nvmlGpmMetricsGet_t``), checked on the way in; errors are the real ``NVMLError`` subclasses;
constants and structures are the real ones. The values come from a :class:`ReplayNvml` of a real
H100 capture (which serves its own, laxer stand-ins; this class translates and checks).

Faults are injected per call and device: :meth:`StrictNvml.fault` (any NVML error code on a
function for one device, on chosen calls), :meth:`mig` (a GPU in MIG mode: utilisation and GPM
samples NOT_SUPPORTED, MIG slices with their own ``MIG-`` UUIDs), :meth:`deny` (a GPU whose handle
is refused, NO_PERMISSION: cgroup device limits), :meth:`lose` (GPU_IS_LOST on every call),
:meth:`old_driver` (a C symbol missing: FUNCTION_NOT_FOUND) and :meth:`hide` (a function the
bindings do not have).
"""

from __future__ import annotations

import ctypes
import inspect
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pynvml as real

from wattprof.collectors.nvml import ReplayGpmMetricsGet, ReplayGpmSample, ReplayNvml, ReplayNVMLError

_NEVER_SIMULATED = object()


class StrictNvml:
    """The real pynvml's surface over a replayed capture; see the module docstring."""

    def __init__(self, backing: ReplayNvml) -> None:
        self._b = backing
        n = len(backing._gpus)
        self._structs = [real.struct_c_nvmlDevice_t() for _ in range(n)]
        self._index = {ctypes.addressof(s): i for i, s in enumerate(self._structs)}
        self._mig_structs: dict[str, tuple[int, Any]] = {}  # MIG uuid -> (parent index, struct)
        self._mig_addr: dict[int, int] = {}  # address of a MIG handle's struct -> parent index
        self._samples: dict[int, tuple[Any, ReplayGpmSample]] = {}  # address -> (struct, replay sample)
        self._hidden: set[str] = set()
        self._no_symbol: set[str] = set()
        self._faults: list[tuple[str, int | None, int, Callable[[int], bool]]] = []
        self._calls: dict[tuple[str, int | None], int] = defaultdict(int)
        self.mig_gpus: set[int] = set()
        self.denied: set[int] = set()
        #: every call, as (function name, device index or None), in order
        self.log: list[tuple[str, int | None]] = []

    # ---- faults ---------------------------------------------------------------------------------
    def fault(self, fn: str, code: int, *, device: int | None = None,
              when: Callable[[int], bool] = lambda n: True) -> None:
        """``fn`` raises ``NVMLError(code)`` on calls for ``device`` (any: None) whose 0-based count
        (per function and device) satisfies ``when``."""
        self._real_function(fn)
        self._faults.append((fn, device, code, when))

    def mig(self, gpu: int, slices: int = 2) -> list[str]:
        """Put ``gpu`` in MIG mode; return its slices' ``MIG-`` UUIDs."""
        self.mig_gpus.add(gpu)
        uuids = []
        for k in range(slices):
            u = f"MIG-{gpu:04x}{k:04x}-5a5a-5a5a-5a5a-5a5a5a5a5a5a"
            s = real.struct_c_nvmlDevice_t()
            self._mig_structs[u] = (gpu, s)
            self._mig_addr[ctypes.addressof(s)] = gpu
            uuids.append(u)
        return uuids

    def deny(self, gpu: int) -> None:
        """Refuse ``gpu``'s handle with NO_PERMISSION (nvmlDeviceGetCount still counts it)."""
        self.denied.add(gpu)

    def lose(self, gpu: int) -> None:
        """``gpu`` falls off the bus: GPU_IS_LOST from now on."""
        self._b.lost.add(gpu)

    def old_driver(self, *symbols: str) -> None:
        """A driver older than these C symbols: their functions raise FUNCTION_NOT_FOUND (pynvml's
        ``_nvmlGetFunctionPointer`` does exactly that for a symbol the library lacks)."""
        for s in symbols:
            self._real_function(s)
        self._no_symbol.update(symbols)

    def hide(self, *names: str) -> None:
        """Bindings without these names (removed from, or not yet in, nvidia-ml-py)."""
        self._hidden.update(names)

    # ---- the surface ------------------------------------------------------------------------------
    def _real_function(self, name: str) -> Any:
        fn = getattr(real, name, None)
        if not inspect.isfunction(fn):
            raise AttributeError(f"the installed pynvml has no function {name}")
        return fn

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in self._hidden or not hasattr(real, name):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        value = getattr(real, name)
        if not (inspect.isfunction(value) and name.startswith("nvml")):
            return value  # constants, ctypes structures, NVMLError and its subclasses: the real ones
        impl = getattr(type(self), "_" + name, _NEVER_SIMULATED)
        sig = inspect.signature(value)

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)  # TypeError on a call the real function would refuse
            bound.apply_defaults()
            if impl is _NEVER_SIMULATED:
                raise NotImplementedError(f"StrictNvml does not simulate {name}: the collector should not call it")
            dev = self._device_of(bound)
            if name == "nvmlDeviceGetHandleByIndex" and isinstance(bound.arguments["index"], int):
                dev = bound.arguments["index"]
            self.log.append((name, dev))
            n = self._calls[(name, dev)]
            self._calls[(name, dev)] = n + 1
            if name in self._no_symbol:
                raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)
            if dev is not None and dev in self._b.lost:
                raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
            for fn, device, code, when in self._faults:
                if fn == name and device in (None, dev) and when(n):
                    raise real.NVMLError(code)
            try:
                return impl(self, *bound.args, **bound.kwargs)
            except ReplayNVMLError as e:
                raise real.NVMLError(e.value) from None

        call.__name__ = name
        call.__signature__ = sig  # type: ignore[attr-defined]
        return call

    # ---- argument checks ----------------------------------------------------------------------------
    def _device_of(self, bound: inspect.BoundArguments) -> int | None:
        for value in bound.arguments.values():
            if isinstance(value, real.c_nvmlDevice_t) and value:
                addr = ctypes.addressof(value.contents)
                return self._index.get(addr, self._mig_addr.get(addr))
        return None

    def _gpu(self, handle: Any, *, mig_ok: bool = False) -> int:
        """The replay index of a real ``c_nvmlDevice_t`` this library gave out, else an error."""
        if not isinstance(handle, real.c_nvmlDevice_t):
            raise TypeError(f"expected a pynvml c_nvmlDevice_t handle, got {type(handle).__name__}: ctypes would "
                            "pass it as a pointer (a crash or Invalid Argument on a real driver)")
        if not handle:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        addr = ctypes.addressof(handle.contents)
        if addr in self._index:
            return self._index[addr]
        if mig_ok and addr in self._mig_addr:
            return self._mig_addr[addr]
        raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)

    @staticmethod
    def _uint(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
            raise TypeError(f"{what} must be an unsigned int, got {value!r}")
        return value

    def _handle(self, i: int) -> Any:
        return real.c_nvmlDevice_t(self._structs[i])

    # ---- the simulated functions (names: "_" + pynvml's) ------------------------------------------
    def _nvmlInit(self) -> None:  # noqa: N802
        self._b.nvmlInit()

    def _nvmlShutdown(self) -> None:  # noqa: N802
        self._b.nvmlShutdown()

    def _nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return self._b.nvmlDeviceGetCount()

    def _nvmlDeviceGetHandleByIndex(self, index: Any) -> Any:  # noqa: N802
        i = self._uint(index, "index")
        self._b.nvmlDeviceGetHandleByIndex(i)
        if i in self.denied:
            raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)
        if i in self._b.lost:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        return self._handle(i)

    def _nvmlDeviceGetHandleByUUID(self, uuid: Any) -> Any:  # noqa: N802
        if not isinstance(uuid, str | bytes):
            raise TypeError(f"uuid must be str or bytes, got {uuid!r}")
        u = uuid.decode() if isinstance(uuid, bytes) else uuid
        if u in self._mig_structs:
            return real.c_nvmlDevice_t(self._mig_structs[u][1])
        i = self._b.nvmlDeviceGetHandleByUUID(u)
        if i in self.denied:
            raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)
        return self._handle(i)

    def _nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> Any:  # noqa: N802, N803
        gpu = self._gpu(migDevice, mig_ok=True)
        if ctypes.addressof(migDevice.contents) not in self._mig_addr:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)  # not a MIG handle
        return self._handle(gpu)

    def _nvmlDeviceGetIndex(self, handle: Any) -> int:  # noqa: N802
        return self._b.nvmlDeviceGetIndex(self._gpu(handle))

    def _nvmlDeviceGetUUID(self, handle: Any) -> str:  # noqa: N802
        return self._b.nvmlDeviceGetUUID(self._gpu(handle))

    def _nvmlDeviceGetName(self, handle: Any) -> str:  # noqa: N802
        return self._b.nvmlDeviceGetName(self._gpu(handle))

    def _nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:  # noqa: N802
        return self._b.nvmlDeviceGetEnforcedPowerLimit(self._gpu(handle))

    def _nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:  # noqa: N802
        return ctypes.c_uint64(self._b.nvmlDeviceGetTotalEnergyConsumption(self._gpu(handle))).value

    def _nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: Any) -> Any:  # noqa: N802, N803
        gpu = self._gpu(handle)
        if not isinstance(fieldIds, list | tuple) or not fieldIds:
            raise TypeError(f"fieldIds must be a non-empty list of field ids, got {fieldIds!r}")
        values = (real.c_nvmlFieldValue_t * len(fieldIds))()
        for k, fid in enumerate(fieldIds):
            values[k].fieldId = self._uint(fid[0] if isinstance(fid, tuple) else fid, "field id")
        answers = self._b.nvmlDeviceGetFieldValues(gpu, [v.fieldId for v in values])
        for v, a in zip(values, answers, strict=True):
            v.nvmlReturn = a.nvmlReturn
            v.timestamp = a.timestamp
            if a.nvmlReturn == 0:
                v.valueType = real.NVML_VALUE_TYPE_UNSIGNED_INT
                v.value.uiVal = a.value.uiVal
        return values

    def _nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:  # noqa: N802
        gpu = self._gpu(handle)
        if gpu in self.mig_gpus:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)  # what NVML answers on a GPU in MIG mode
        u = self._b.nvmlDeviceGetUtilizationRates(gpu)
        out = real.c_nvmlUtilization_t()
        out.gpu, out.memory = u.gpu, u.memory
        return out

    def _nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:  # noqa: N802
        if version is not None:
            raise NotImplementedError("StrictNvml simulates nvmlDeviceGetMemoryInfo v1 only")
        m = self._b.nvmlDeviceGetMemoryInfo(self._gpu(handle))
        out = real.c_nvmlMemory_t()
        out.total, out.free, out.used = m.total, max(m.total - m.used, 0), m.used
        return out

    def _nvmlDeviceGetClockInfo(self, handle: Any, type: Any) -> int:  # noqa: N802, A002
        gpu = self._gpu(handle)
        if self._uint(type, "clock type") not in (real.NVML_CLOCK_GRAPHICS, real.NVML_CLOCK_SM, real.NVML_CLOCK_MEM,
                                                  real.NVML_CLOCK_VIDEO):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        if type not in (real.NVML_CLOCK_SM, real.NVML_CLOCK_MEM):
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)  # not in the capture
        return self._b.nvmlDeviceGetClockInfo(gpu, type)

    def _temperature(self, handle: Any, sensor: Any) -> int:
        gpu = self._gpu(handle)
        if self._uint(sensor, "sensor") != real.NVML_TEMPERATURE_GPU:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return self._b.nvmlDeviceGetTemperature(gpu, sensor)

    def _nvmlDeviceGetTemperature(self, handle: Any, sensor: Any) -> int:  # noqa: N802
        return self._temperature(handle, sensor)

    def _nvmlDeviceGetTemperatureV(self, handle: Any, sensor: Any, version: Any = None) -> int:  # noqa: N802
        if version != real.nvmlTemperature_v1:
            raise real.NVMLError(real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return self._temperature(handle, sensor)

    def _nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:  # noqa: N802
        return self._b.nvmlDeviceGetCurrentClocksEventReasons(self._gpu(handle))

    def _nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:  # noqa: N802
        return self._b.nvmlDeviceGetCurrentClocksEventReasons(self._gpu(handle))

    # GPM
    def _nvmlGpmQueryDeviceSupport(self, device: Any) -> Any:  # noqa: N802
        s = self._b.nvmlGpmQueryDeviceSupport(self._gpu(device))
        out = real.c_nvmlGpmSupport_t()
        out.version, out.isSupportedDevice = real.NVML_GPM_SUPPORT_VERSION, s.isSupportedDevice
        return out

    def _nvmlGpmSampleAlloc(self) -> Any:  # noqa: N802
        struct = real.struct_c_nvmlGpmSample_t()
        self._samples[ctypes.addressof(struct)] = (struct, self._b.nvmlGpmSampleAlloc())
        return real.c_nvmlGpmSample_t(struct)

    def _sample(self, sample: Any) -> ReplayGpmSample:
        if not isinstance(sample, real.c_nvmlGpmSample_t):
            raise TypeError(f"expected a pynvml c_nvmlGpmSample_t, got {type(sample).__name__}")
        entry = self._samples.get(ctypes.addressof(sample.contents)) if sample else None
        if entry is None:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)  # never allocated, or freed
        return entry[1]

    def _nvmlGpmSampleFree(self, gpmSample: Any) -> None:  # noqa: N802, N803
        s = self._sample(gpmSample)
        self._b.nvmlGpmSampleFree(s)
        del self._samples[ctypes.addressof(gpmSample.contents)]

    def _nvmlGpmSampleGet(self, device: Any, gpmSample: Any) -> Any:  # noqa: N802, N803
        gpu = self._gpu(device)
        s = self._sample(gpmSample)
        if gpu in self.mig_gpus:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)  # MIG: nvmlGpmMigSampleGet per GPU instance
        self._b.nvmlGpmSampleGet(gpu, s)
        return gpmSample

    def _nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:  # noqa: N802, N803
        if not isinstance(metricsGet, real.c_nvmlGpmMetricsGet_t):
            raise TypeError(f"expected a pynvml c_nvmlGpmMetricsGet_t, got {type(metricsGet).__name__}")
        n = int(metricsGet.numMetrics)
        if not 0 < n <= real.NVML_GPM_METRIC_MAX:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        req = ReplayGpmMetricsGet()
        req.version = metricsGet.version
        req.numMetrics = n
        req.sample1, req.sample2 = self._sample(metricsGet.sample1), self._sample(metricsGet.sample2)
        for k in range(n):
            req.metrics[k].metricId = metricsGet.metrics[k].metricId
        self._b.nvmlGpmMetricsGet(req)
        for k in range(n):
            metricsGet.metrics[k].nvmlReturn = req.metrics[k].nvmlReturn
            metricsGet.metrics[k].value = req.metrics[k].value
        return metricsGet

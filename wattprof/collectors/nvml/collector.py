"""The NVML collector: NVIDIA GPUs through NVML (nvidia-ml-py, module ``pynvml``).

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

import logging
import os
from typing import Any

from ...clock import SYSTEM_CLOCK, Clock
from ...errors import CollectorError, DeviceLostError
from ..base import (
    DEVICE_LOST,
    DEVICE_READ_ERROR,
    DEVICE_SKIPPED,
    DEVICE_UNSELECTED,
    METRIC_MISSING,
    Collector,
)
from .codes import (
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_NOT_SUPPORTED,
    as_str,
    error_name,
    nvml_errors,
)
from .devices import ENERGY, METRICS, Device, Metric, field_value, parse_visible_devices
from .gpm import GPM_COLUMNS, GPM_MIN_INTERVAL_S, GpmSampler, gpm_interval_option, gpm_option

log = logging.getLogger(__name__)

#: After the first three, a GPU's transient read errors are noted at most once per this many
#: seconds, each event with the count so far (the report takes the highest).
READ_ERROR_NOTE_S = 10.0


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
    happened is reported as events (:meth:`collect`; the recorder writes them to the run)."""

    name = "nvml"
    metrics = ("energy_j", "power_w", "power_avg_w", "util_pct", "mem_util_pct", "mem_used_bytes",
               "sm_clock_mhz", "temp_c", "throttle_reasons", *GPM_COLUMNS)

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, nvml: Any = None, gpm: bool | str | None = None,
                 gpm_interval: float = GPM_MIN_INTERVAL_S) -> None:
        super().__init__(clock=clock)
        self._nvml = nvml
        self._reading: list[Device] = []
        self._open = False
        self.gpm = gpm_option(gpm)
        self.gpm_interval = gpm_interval_option(gpm_interval)
        self._gpm = GpmSampler(clock, mode=self.gpm, interval=self.gpm_interval)

    @property
    def gpm_status(self) -> dict[str, str]:
        """Per device: "enabled", "disabled ..." or "unsupported: <reason>" (also in the device
        metadata from open(); updated, in the run's devices too, if GPM fails later in the run)."""
        return self._gpm.status

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

    def _note(self, kind: str, dev: str, message: str, **extra: Any) -> None:
        """Queue an event about one device (``device_skipped``, ``device_unselected``,
        ``device_lost``, ``metric_missing``, ``device_read_error``): taken by the recorder with the
        next reading (:meth:`take_events`)."""
        log.info("%s", message)
        self.emit(kind, message, device=dev, t=self.clock.time(), **extra)

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
        skipped: list[str] = []
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
                skipped.append(f"{dev}: not recorded: NVML could not open it ({e})")
                self._note(DEVICE_SKIPPED, dev, skipped[-1], reason=str(e))
                continue
            dev = f"gpu:{idx}"
            if dev in devices:
                devices[dev]["shared"] = True
                continue
            try:
                devices[dev] = self._open_device(lib, dev, h, idx, cuda_index, is_mig)
            except lib.NVMLError as e:
                self._gpm.drop(lib, dev)
                skipped.append(f"{dev}: not recorded: NVML failed while opening it ({e})")
                self._note(DEVICE_SKIPPED, dev, skipped[-1], reason=str(e))
                continue
            self._reading.append(Device(dev, h))
        chosen = {i for i, _ in selected if i >= 0} | {int(d.partition(":")[2]) for d in devices}
        for i in range(count):
            if i not in chosen:  # never opened: its handle may well be refused (cgroup device limits)
                self._note(DEVICE_UNSELECTED, f"gpu:{i}", f"gpu:{i}: not recorded: not selected by "
                           f"CUDA_VISIBLE_DEVICES={env}", reason="not selected by CUDA_VISIBLE_DEVICES")
        if selected and not devices:
            raise CollectorError("none of the selected GPUs could be opened: " + "; ".join(skipped))
        if env is not None and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            for info in devices.values():
                info["cuda_order_note"] = ("CUDA_VISIBLE_DEVICES indices were read in NVML (PCI) order; "
                                           "set CUDA_DEVICE_ORDER=PCI_BUS_ID for the two to agree")
        return devices

    def _uuid_or_blank(self, lib: Any, i: int) -> str:
        try:
            return as_str(lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetHandleByIndex(i)))
        except lib.NVMLError as e:
            log.info("gpu:%d: no UUID (%s): it cannot match a GPU- entry of CUDA_VISIBLE_DEVICES", i, e)
            return ""

    def _open_device(self, lib: Any, dev: str, h: Any, idx: int, cuda_index: int, is_mig: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "kind": "gpu", "vendor": "nvidia", "name": as_str(lib.nvmlDeviceGetName(h)),
            "uuid": as_str(lib.nvmlDeviceGetUUID(h)), "nvml_index": idx, "cuda_index": cuda_index,
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
        info["gpm"] = self._gpm.open(lib, dev, h)
        if dev in self._gpm.states:
            info["gpm_interval_s"] = self.gpm_interval
            info["gpm_t"] = "GPM rows are stamped at the midpoint of their window (mean over the window)"
        return info

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
        lost: list[tuple[Device, Exception]] = []
        for d in list(self._reading):
            try:
                gpm_row = self._gpm_read(lib, d.dev)  # before the NVML row: earlier t, and the NVML row stays last
                if gpm_row is not None:
                    out.append(gpm_row)
                row = self._read_device(lib, d)
            except lib.NVMLError as e:
                if getattr(e, "value", None) == ERROR_GPU_IS_LOST:
                    self._reading.remove(d)
                    self._gpm.drop(lib, d.dev)
                    lost.append((d, e))
                else:
                    d.errors += 1
                    now = self.clock.monotonic()
                    if d.errors <= 3 or now - d.errors_noted_at >= READ_ERROR_NOTE_S:  # rate-limited
                        d.errors_noted_at = now
                        self._note(DEVICE_READ_ERROR, d.dev, f"{d.dev}: reading dropped ({d.errors} so far): "
                                   f"NVML: {e}; the other GPUs' readings are kept", dropped=d.errors, reason=str(e))
                continue
            if row is not None:
                out.append(row)
        if lost and not self._reading:  # nothing left: the collector stops (one device_lost event)
            raise DeviceLostError(f"NVML: GPU is lost: {', '.join(d.dev for d, _ in lost)} ({lost[0][1]}); "
                                  "no GPU left to record")
        for d, why in lost:  # the others go on: each lost GPU is an event of its own device
            rest = ", ".join(x.dev for x in self._reading)
            self._note(DEVICE_LOST, d.dev, f"{d.dev}: GPU is lost (NVML: {why}); its recording stops here, "
                       f"the other GPUs go on ({rest})", reason=str(why))
        return out

    def _gpm_read(self, lib: Any, dev: str) -> dict[str, Any] | None:
        """The device's GPM row when a window is due; GPM failing mid-run is put in the run's device
        metadata and noted (the NVML readings go on)."""
        before = self._gpm.status.get(dev)
        row = self._gpm.read(lib, dev)
        status = self._gpm.status.get(dev)
        if status != before and status is not None:
            self.update_device(dev, {"gpm": status})
            self._note(METRIC_MISSING, dev, f"{dev}: GPM activity not recorded from here on: {status}",
                       metrics=list(GPM_COLUMNS), reason=status)
        return row

    def _read_device(self, lib: Any, d: Device) -> dict[str, Any] | None:
        """One GPU's row, stamped just before its reads (the energy counter first: the call takes
        ~2.8 ms on H100; the stamp the recorded traces use, and the one analysis assumes). A metric
        the device cannot give is left out; any other NVML error is raised (the row is dropped)."""
        t0 = self.clock.time()
        row: dict[str, Any] = {"device": d.dev, **self._metric(lib, d, ENERGY)}
        row.update(self._power_fields(lib, d))
        for m in METRICS:
            row.update(self._metric(lib, d, m))
        if len(row) == 1:
            return None
        row["t"] = t0
        return row

    def _power_fields(self, lib: Any, d: Device) -> dict[str, float]:
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
                out[col] = field_value(fv) / 1000.0
            elif ret == ERROR_GPU_IS_LOST:
                raise lib.NVMLError(ret)
            elif ret in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
                self._missing(d, (col,), f"NVML field {fv.fieldId} answered {error_name(lib, ret)}")
            # another per-field error: this reading lacks the value (NaN), the next one may have it
        return out

    def _metric(self, lib: Any, d: Device, m: Metric) -> dict[str, float]:
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

    def _missing(self, d: Device, columns: tuple[str, ...], reason: str) -> None:
        d.missing[columns] = reason
        d.fields = [(fid, col) for fid, col in d.fields if col not in columns]
        d.field_ids = [fid for fid, _ in d.fields]
        self._note(METRIC_MISSING, d.dev, f"{d.dev}: {', '.join(columns)} not recorded: {reason}",
                   metrics=list(columns), reason=reason)

    def options(self) -> dict[str, Any]:
        return {"gpm": "auto" if self.gpm is None else self.gpm, "gpm_interval": self.gpm_interval}

    def _release(self, *, strict: bool = False) -> None:
        """Free every GPM sample and shut NVML down (what open() took). A failed shutdown raises
        :class:`CollectorError` with ``strict`` (close()), else is only logged (a failed open())."""
        self._open = False
        self._reading = []
        self._gpm.drop_all(self.nvml)
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError as e:
            if strict:
                raise CollectorError(f"NVML shutdown failed: {e}") from None
            log.debug("nvmlShutdown failed: %s", e)

    def close(self) -> None:
        if self._open:
            self._release(strict=True)



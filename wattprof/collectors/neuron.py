"""AWS Neuron devices (Trainium, Inferentia): ``neuron-monitor`` activity and an *estimated* power.

Facts: ``tests/fixtures/aws-neuron/README.md``. Neither neuron-monitor, neuron-top nor neuron-ls
reports power, so Neuron power here is always an estimate (``power_est_w``), labelled with its
source in the device metadata:

- **sysfs power utilization** (Neuron driver 2.21.37+, SDK 2.25+):
  ``<sysfs_root>/neuron<N>/stats/power/utilization`` holds one line
  ``<status>,<epoch_s>,<min_pct>,<max_pct>,<avg_pct>``: percent of the device's maximum power with
  background power backed out, aggregated per wall-clock minute. Watts = ``idle_w + avg_pct / 100
  x max_w``. The value is held until the next minute's appears, so it lags by up to a minute:
  useful for runs of minutes, not for per-step figures.
- **utilization-based**, when there is no sysfs file or it has no valid data
  (``POWER_STATUS_NO_DATA`` / ``POWER_STATUS_INVALID``): ``idle_w + (max_w - idle_w) x NeuronCore
  utilization`` from neuron-monitor.

``max_w`` defaults to third-party figures (AWS publishes no chip TDP): Inferentia1 ~75 W,
Inferentia2 ~100 W, Trainium2 ~500 W; none is known for Trainium1, whose power stays unestimated
unless ``max_w`` is given. ``idle_w`` defaults to 0 (nothing published). The device type comes
from the ``device_type`` option, else the instance type (neuron-monitor's ``instance_info``,
else the DMI product name, which is the instance type on EC2 Nitro), else
``neuron_hardware_info``.

neuron-monitor runs once for the whole recording with a generated config (``"period": "1s"``:
whole seconds; ``"1.0s"`` has been seen to fall back to 5 s), one JSON report per line, each
stamped on arrival (reports carry no time). Devices are ``neuron:<N>`` (the N of
``neuron<N>``): per-core utilisation is averaged into its device, the unit power is known for.
Parsing: :mod:`wattprof.formats.neuron_monitor`. ``"error"`` strings in reports, neuron-monitor
exits (it is restarted with the nvidia-smi collector's backoff) and sysfs status changes are
reported once each by the next ``read()`` raising :class:`CollectorError` (the recorder writes an
event); the samples of that moment are returned by the read after.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, InputError
from ..formats.neuron_monitor import DEVICE_COLUMNS, HOST_COLUMNS, device_id, parse_report, report_info
from ..schema import METRICS
from .base import Collector
from .nvidia_smi import EventSurfacing, LineProcess, find_executable

SYSFS_ROOT = "/sys/devices/virtual/neuron_device"
POWER_FILE = Path("stats") / "power" / "utilization"
DMI_PRODUCT_NAME = Path("/sys/devices/virtual/dmi/id/product_name")
MONITOR_FALLBACKS = ("/opt/aws/neuron/bin/neuron-monitor",)
STATUS_VALID = "POWER_STATUS_VALID"

TYPE_NAMES: dict[str, str] = {"inf1": "Inferentia1", "inf2": "Inferentia2", "trn1": "Trainium1",
                              "trn2": "Trainium2", "trn3": "Trainium3"}
#: Maximum power per device, watts: third-party figures (AWS publishes none; aws-neuron/README.md).
MAX_W_DEFAULTS: dict[str, float] = {"inf1": 75.0, "inf2": 100.0, "trn2": 500.0}
#: neuron_hardware_info (neuron_device_type, neuron_device_version) -> type. The user guide shows
#: ("trainium2", "v4") on trn2; real reports: ("trainium", "v2") on trn1, ("inferentia2", "v3") on
#: inf2, ("inferentia", "v1") on inf1. The name decides; a version that contradicts it is ignored.
_HW_TYPES: dict[str, str] = {"inferentia": "inf1", "inferentia2": "inf2", "trainium": "trn1", "trainium1": "trn1",
                             "trainium2": "trn2", "trainium3": "trn3"}
#: Instance families: trn1.2xlarge, trn1n.32xlarge, trn2.48xlarge, trn2u.48xlarge (UltraServer
#: node), trn2n (the user guide's example): a family letter suffix is a variant of the same chip.
_INSTANCE_RE = re.compile(r"^(inf1|inf2|trn1|trn2|trn3)[a-z]*[.\-]", re.IGNORECASE)

#: neuron-monitor config (README): every runtime's core counters, memory, vCPU use and execution
#: stats; the host's vCPU use, memory and hardware counters.
MONITOR_CONFIG: dict[str, Any] = {
    "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
        {"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "neuron_runtime_vcpu_usage"},
        {"type": "execution_stats"}]}],
    "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}, {"type": "neuron_hw_counters"}],
}

_WANTED = (*DEVICE_COLUMNS, *HOST_COLUMNS, "power_util_pct", "power_est_w")


def type_from_instance(instance_type: str | None) -> str | None:
    m = _INSTANCE_RE.match(instance_type or "")
    return m.group(1).lower() if m else None


def type_from_name(value: str | None) -> str | None:
    """``trn2``, ``Trainium2``, ``trainium2``, ``Inferentia`` (sysfs/neuron-monitor names) -> type key."""
    v = (value or "").strip().lower()
    for key, name in TYPE_NAMES.items():
        if v in (key, name.lower()):
            return key
    return _HW_TYPES.get(v)


def normalise_type(value: str) -> str:
    found = type_from_name(value)
    if found is None:
        raise InputError(f"neuron: device_type {value!r} is not one of {', '.join(TYPE_NAMES)}")
    return found


def parse_power_line(text: str) -> tuple[str, float, float, float, float] | None:
    """``POWER_STATUS_VALID,1789180860,0.86,25.00,18.86`` -> (status, epoch_s, min, max, avg)."""
    parts = [p.strip() for p in text.strip().split(",")]
    if len(parts) != 5 or not parts[0].startswith("POWER_STATUS_"):
        return None
    try:
        return parts[0], float(parts[1]), float(parts[2]), float(parts[3]), float(parts[4])
    except ValueError:
        return None


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool | int):
        return bool(value)
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"neuron: {name} must be 0 or 1, not {value!r}")


class NeuronCollector(EventSurfacing, Collector):
    """``neuron[:max_w=W,idle_w=W,device_type=trn2,sysfs_root=DIR,executable=PATH,period_s=1,
    monitor=auto|on|off,host_metrics=0]``."""

    name = "neuron"
    #: Stored columns: those the schema knows (the rest of _WANTED appear once it does).
    metrics = tuple(dict.fromkeys(c for c in _WANTED if c in METRICS))

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, executable: str = "neuron-monitor",
                 sysfs_root: str | None = None, max_w: float | None = None, idle_w: float | None = None,
                 device_type: str | None = None, period_s: int = 1, monitor: str = "auto",
                 host_metrics: Any = 0, wait_s: float = 5.0) -> None:
        super().__init__(clock=clock)
        if isinstance(period_s, bool) or not isinstance(period_s, int | float) or period_s < 1 \
                or period_s != int(period_s):
            raise InputError(f"neuron: period_s must be a whole number of seconds >= 1 (neuron-monitor "
                             f"falls back to 5 s on fractions), not {period_s!r}")
        for label, v in (("max_w", max_w), ("idle_w", idle_w)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
                raise InputError(f"neuron: {label} must be a number of watts >= 0, not {v!r}")
        if max_w is not None and idle_w is not None and idle_w > max_w:
            raise InputError(f"neuron: idle_w ({idle_w}) is above max_w ({max_w})")
        mode = str(monitor).strip().lower()
        mode = {"1": "on", "true": "on", "0": "off", "false": "off"}.get(mode, mode)
        if mode not in ("auto", "on", "off"):
            raise InputError(f"neuron: monitor must be auto, on or off, not {monitor!r}")
        self.executable = str(executable)
        self.sysfs_root = Path(sysfs_root or SYSFS_ROOT)
        self.max_w_option = None if max_w is None else float(max_w)
        self.idle_w_option = None if idle_w is None else float(idle_w)
        self.device_type_option = normalise_type(device_type) if device_type else None
        self.period_s = int(period_s)
        self.monitor = mode
        self.host_metrics = _flag(host_metrics, "host_metrics")
        self.wait_s = float(wait_s)
        # state
        self.max_w: float | None = None
        self.idle_w = 0.0
        self.device_type: str | None = None
        self._monitor_path: str | None = None
        self._config: str | None = None
        self._proc: LineProcess | None = None
        self._first_report = threading.Event()
        self._hardware: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._devices: dict[str, int] = {}
        self._power_files: dict[int, Path] = {}
        self._rows: list[dict[str, Any]] = []
        self._events: list[str] = []
        self._seen_errors: set[str] = set()
        self._status: dict[int, str] = {}
        self._last_poll: float | None = None
        self._lock = threading.Lock()

    def options(self) -> dict[str, Any]:
        return {"executable": self._monitor_path or self.executable, "sysfs_root": str(self.sysfs_root),
                "max_w": self.max_w_option, "idle_w": self.idle_w_option, "device_type": self.device_type_option,
                "period_s": self.period_s, "monitor": self.monitor, "host_metrics": self.host_metrics}

    # --- discovery ---------------------------------------------------------------------------------
    def _sysfs_devices(self) -> dict[int, Path]:
        out: dict[int, Path] = {}
        try:
            entries = list(self.sysfs_root.iterdir())
        except OSError:
            return out
        for p in entries:
            m = re.fullmatch(r"neuron(\d+)", p.name)
            if m and p.is_dir():
                out[int(m.group(1))] = p
        return dict(sorted(out.items()))

    def _find_monitor(self) -> str | None:
        if self.monitor == "off":
            return None
        return find_executable(self.executable, *(MONITOR_FALLBACKS if self.executable == "neuron-monitor" else ()))

    def available(self) -> tuple[bool, str]:
        devs = self._sysfs_devices()
        power = [i for i, p in devs.items() if (p / POWER_FILE).is_file()]
        mon = self._find_monitor()
        mon_text = f"neuron-monitor at {mon}" if mon else (
            "neuron-monitor off" if self.monitor == "off" else "neuron-monitor not found on PATH")
        if not devs and not Path("/dev/neuron0").exists():
            return False, f"no Neuron device (nothing under {self.sysfs_root}, no /dev/neuron0); {mon_text}"
        if self.monitor == "on" and not mon:
            return False, f"{len(devs)} Neuron device(s) but {mon_text}"
        if not mon and not power:
            return False, (f"{len(devs)} Neuron device(s), but {mon_text} and no sysfs power file "
                           f"({POWER_FILE}, Neuron driver 2.21.37+): nothing to measure")
        how = ("power estimated from the sysfs power utilization file(s)" if power
               else "power estimated from NeuronCore utilization (no sysfs power file)")
        return True, f"{len(devs) or 'some'} Neuron device(s); {mon_text}; {how}"

    # --- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> dict[str, dict]:
        sysfs = self._sysfs_devices()
        self._power_files = {i: p / POWER_FILE for i, p in sysfs.items() if (p / POWER_FILE).is_file()}
        self._monitor_path = self._find_monitor()
        if self.monitor == "on" and not self._monitor_path:
            raise CollectorError(f"{self.executable} not found on PATH (monitor=on)")
        if self._monitor_path:
            self._start_monitor(self._monitor_path)
            self._first_report.wait(self.wait_s)
        elif not self._power_files:
            raise CollectorError("neither neuron-monitor nor a sysfs power utilization file: nothing to measure")
        with self._lock:
            hardware, info = dict(self._hardware), dict(self._info)
            seen = {int(r["device"].split(":", 1)[1]) for r in self._rows if r["device"].startswith("neuron:")}
        count = hardware.get("neuron_device_count")
        indices = set(sysfs) | seen | (set(range(count)) if isinstance(count, int) and count > 0 else set())
        if not indices:
            self.close()
            raise CollectorError(f"no Neuron device found (nothing under {self.sysfs_root}; neuron-monitor "
                                 f"{'reported none' if self._monitor_path else 'not running'})")
        self.device_type = self._detect_type(info, hardware)
        self.max_w = self.max_w_option if self.max_w_option is not None else MAX_W_DEFAULTS.get(self.device_type or "")
        self.idle_w = self.idle_w_option if self.idle_w_option is not None else 0.0
        if self.max_w is not None and self.idle_w > self.max_w:
            raise InputError(f"neuron: idle_w ({self.idle_w}) is above max_w ({self.max_w})")
        self._devices = {device_id(i): i for i in sorted(indices)}
        return {dev: self._device_meta(i, info, hardware) for dev, i in self._devices.items()}

    def _start_monitor(self, path: str) -> None:
        fd, self._config = tempfile.mkstemp(prefix="wattprof-neuron-monitor-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"period": f"{self.period_s}s", **MONITOR_CONFIG}, f)
        self._proc = LineProcess("neuron-monitor", [path, "-c", self._config], self._on_line, clock=self.clock)
        try:
            self._proc.start()
        except OSError as e:
            self._proc = None
            raise CollectorError(f"could not start {path}: {e}") from None

    def _detect_type(self, info: dict[str, Any], hardware: dict[str, Any]) -> str | None:
        if self.device_type_option:
            return self.device_type_option
        found = type_from_instance(info.get("instance_type"))
        if found:
            return found
        try:
            found = type_from_instance(DMI_PRODUCT_NAME.read_text().strip())
        except OSError:
            found = None
        if found:
            return found
        return type_from_name(str(hardware.get("neuron_device_type", "")))

    def power_source(self, index: int) -> str:
        type_name = TYPE_NAMES.get(self.device_type or "", "this Neuron device type (unknown)")
        if self.max_w is None:
            return (f"none: no published maximum power for {type_name} (AWS publishes no chip TDP); "
                    "pass max_w=WATTS (and idle_w=WATTS) to estimate")
        watts = f"max_w={self.max_w:g} W, idle_w={self.idle_w:g} W"
        util = "idle_w + (max_w - idle_w) x NeuronCore utilization (neuron-monitor)"
        if index in self._power_files:
            text = (f"estimated: idle_w + max_w x neuron sysfs power utilization ({self._power_files[index]}: "
                    "percent of max power, per-minute average, held until the next minute's)")
            if self._proc is not None:
                text += f"; while the file has no valid data: {util}"
            return f"{text}; {watts}"
        if self._proc is not None:
            return f"estimated: utilization-based, {util}; no sysfs power file (Neuron driver 2.21.37+); {watts}"
        return "none: no sysfs power file and no neuron-monitor"

    def _device_meta(self, index: int, info: dict[str, Any], hardware: dict[str, Any]) -> dict[str, Any]:
        type_name = TYPE_NAMES.get(self.device_type or "")
        meta: dict[str, Any] = {
            "kind": "neuron", "vendor": "aws", "neuron_index": index, "collector": self.name,
            "name": (type_name or "AWS Neuron device") + (f" ({info['instance_type']})" if info.get("instance_type") else ""),
            "power_source": self.power_source(index),
            "power_estimated": self.max_w is not None,
            "max_w": self.max_w, "idle_w": self.idle_w if self.max_w is not None else None,
            "max_w_from": ("option max_w" if self.max_w_option is not None else
                           f"default for {type_name} (third-party figure)" if self.max_w is not None else None),
            "timestamps": "stamped on arrival (neuron-monitor reports carry no time)",
        }
        if self.max_w is not None and self.idle_w_option is None:
            meta["idle_w_from"] = "default 0 W (no published idle power; set idle_w=)"
        for k in ("instance_type", "instance_id", "instance_region"):
            if info.get(k):
                meta[k] = info[k]
        for k in ("neuron_device_type", "neuron_device_version", "neuroncore_version",
                  "neuroncore_per_device_count", "neuron_device_memory_size"):
            if k in hardware:
                meta[k] = hardware[k]
        return meta

    # --- the stream --------------------------------------------------------------------------------
    def _note(self, message: str) -> None:
        """Queue an event once per distinct message."""
        with self._lock:
            if message not in self._seen_errors:
                self._seen_errors.add(message)
                self._events.append(message)

    def _on_line(self, line: str, t: float) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            self._note(f"neuron-monitor printed a line that is not JSON ({e.msg}): {line[:120]!r}")
            return
        if not isinstance(obj, dict):
            self._note(f"neuron-monitor printed a JSON {type(obj).__name__}, not a report")
            return
        hw = {k: v for k, v in (obj.get("neuron_hardware_info") or {}).items() if v not in (None, "")} \
            if isinstance(obj.get("neuron_hardware_info"), dict) else {}
        with self._lock:
            self._hardware.update(hw)
            self._info.update({k: v for k, v in report_info(obj).items() if v not in (None, "")})
            hardware = dict(self._hardware)
        samples, errors = parse_report(obj, hardware=hardware)
        for e in errors:
            self._note(f"neuron-monitor: {e}")
        rows = []
        for s in samples:
            if s["device"] == "host" and not self.host_metrics:
                continue
            s["t"] = t
            if s["device"].startswith("neuron:"):
                self._attach_sysfs(s, int(s["device"].split(":", 1)[1]))
            rows.append(s)
        with self._lock:
            self._rows.extend(rows)
        self._first_report.set()

    def _attach_sysfs(self, row: dict[str, Any], index: int) -> None:
        path = self._power_files.get(index)
        if path is None:
            return
        try:
            parsed = parse_power_line(path.read_text())
        except OSError as e:
            status = f"unreadable ({e.strerror or e})"
            parsed = None
        else:
            status = parsed[0] if parsed else "malformed"
        previous = self._status.get(index)
        self._status[index] = status
        if status != previous and (previous is not None or status != STATUS_VALID):
            fallback = ("power estimated from NeuronCore utilization meanwhile" if self._proc is not None
                        else "no power estimate meanwhile")
            with self._lock:
                self._events.append(f"neuron{index}: sysfs power utilization is {status}"
                                    + ("" if status == STATUS_VALID else f"; {fallback}"))
        if parsed and status == STATUS_VALID:
            row["power_util_pct"] = parsed[4]

    def _estimate(self, row: dict[str, Any]) -> None:
        if self.max_w is None:
            return
        pct = row.get("power_util_pct")
        if pct is not None and not math.isnan(pct):
            row["power_est_w"] = self.idle_w + pct / 100.0 * self.max_w
            return
        util = row.get("util_pct")
        if util is not None and not math.isnan(util):
            row["power_est_w"] = self.idle_w + (self.max_w - self.idle_w) * min(max(util, 0.0), 100.0) / 100.0

    def _poll_sysfs(self) -> list[dict[str, Any]]:
        """Without neuron-monitor: one power row per device every period_s."""
        now = self.clock.monotonic()
        if self._last_poll is not None and now - self._last_poll < self.period_s:
            return []
        self._last_poll = now
        t = self.clock.time()
        rows = []
        for dev, index in self._devices.items():
            row: dict[str, Any] = {"device": dev, "t": t}
            self._attach_sysfs(row, index)
            if "power_util_pct" in row:
                rows.append(row)
        return rows

    def read(self) -> list[dict[str, Any]]:
        self._raise_pending()
        with self._lock:
            rows, self._rows = self._rows, []
        if self._proc is None and self._power_files:
            rows += self._poll_sysfs()
        for r in rows:
            if r["device"] in self._devices:
                self._estimate(r)
        return rows

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        if self._config is not None:
            try:
                os.unlink(self._config)
            except OSError:
                pass
            self._config = None

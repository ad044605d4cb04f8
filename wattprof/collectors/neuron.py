"""AWS Neuron devices (Trainium, Inferentia): ``neuron-monitor`` activity and an *estimated* power.

Facts and their sources: ``tests/fixtures/aws-neuron/README.md`` and ``docs/collectors.md``.
Neither neuron-monitor, neuron-top nor neuron-ls reports watts, so Neuron power here is always an
estimate (``power_est_w``), labelled with its source in the device metadata:

- **sysfs power utilization** (:mod:`wattprof.collectors.neuron_sysfs`): the driver's live
  ``utilization_raw`` (driver 2.29+) where present and readable, else the per-minute
  ``utilization`` (driver 2.21.37+): percent of the device's maximum power with background power
  backed out. Watts = ``idle_w + pct / 100 x max_w``. The per-minute value lags by up to a minute.
- **utilization-based**, when there is no power node, it has no valid data, or it cannot be tied
  to the device neuron-monitor reports: ``idle_w + (max_w - idle_w) x NeuronCore utilization``.

``max_w`` and ``idle_w`` default per device type (:data:`POWER_DEFAULTS`, each with its source;
AWS publishes no chip power); ``idle_w`` is a floor because the sysfs figure excludes background
power. With no default (Trainium3) and no option, power stays unestimated and the utilisation is
kept. The device type comes from the ``device_type`` option, else the instance type
(neuron-monitor's ``instance_info``, else the DMI product name, the instance type on EC2 Nitro),
else ``neuron_hardware_info``, else the sysfs ``info/architecture`` names.

Devices are ``neuron:<N>`` in neuron-monitor's numbering. In a container sysfs numbers devices
host-wide while neuron-monitor may number them from 0: sysfs power is tied to a device only by
the same numbering (the same set of indices), by PCI BDF / serial (``neuron-ls -j`` against sysfs)
or by the ``sysfs_map`` option; otherwise the ambiguity is recorded and the sysfs files are not used.

neuron-monitor runs once for the whole recording with a generated config (``"period": "1s"``:
whole seconds; ``"1.0s"`` has been seen to fall back to 5 s), one JSON report per line, each
stamped on arrival (reports carry no time). Parsing: :mod:`wattprof.formats.neuron_monitor`.
``"error"`` strings in reports, neuron-monitor exits (it is restarted with the nvidia-smi
collector's backoff) and sysfs status changes are reported once each by the next ``read()``
raising :class:`CollectorError` (the recorder writes an event); the samples of that moment are
returned by the read after.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import CollectorError, InputError
from ..formats.neuron_monitor import (
    DEVICE_COLUMNS,
    HOST_COLUMNS,
    device_id,
    ecc_counters,
    parse_report,
    report_info,
)
from ..schema import METRICS
from .base import BAD_OUTPUT, COLLECTOR_NOTE, ECC_ERRORS, POWER_SOURCE_CHANGED, TOOL_ERROR
from .neuron_meta import NeuronDeviceMeta, detect_type
from .neuron_pairing import match_devices, parse_sysfs_map, read_neuron_ls
from .neuron_power import (
    IDLE_FLOOR_FRACTION,
    IDLE_FLOOR_SOURCE,
    MAX_W_DEFAULTS,
    POWER_DEFAULTS,
    TYPE_NAMES,
    PowerDefault,
    PowerModel,
    estimate_power,
    normalise_type,
    power_model,
    type_from_instance,
    type_from_name,
)
from .neuron_sysfs import (
    STATUS_VALID,
    PowerNode,
    SysfsDevice,
    find_root,
    parse_minute_line,
    parse_raw_line,
    scan,
)
from .streaming import StreamingCollector, find_executable

__all__ = [
    "IDLE_FLOOR_FRACTION", "IDLE_FLOOR_SOURCE", "MAX_W_DEFAULTS", "MONITOR_CONFIG", "POWER_DEFAULTS", "SYSFS_ROOT",
    "TYPE_NAMES", "NeuronCollector", "PowerDefault", "PowerModel", "estimate_power", "match_devices",
    "normalise_type", "parse_power_line", "parse_sysfs_map", "power_model", "read_neuron_ls", "type_from_instance",
    "type_from_name",
]

SYSFS_ROOT = "/sys/devices/virtual/neuron_device"
MONITOR_FALLBACKS = ("/opt/aws/neuron/bin/neuron-monitor",)
LS_FALLBACKS = ("/opt/aws/neuron/bin/neuron-ls",)
parse_power_line = parse_minute_line  # the per-minute file's format (kept for callers)

#: neuron-monitor config (README): every runtime's core counters, memory, vCPU use and execution
#: stats; the host's vCPU use, memory and hardware counters.
MONITOR_CONFIG: dict[str, Any] = {
    "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
        {"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "neuron_runtime_vcpu_usage"},
        {"type": "execution_stats"}]}],
    "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}, {"type": "neuron_hw_counters"}],
}

_WANTED = (*DEVICE_COLUMNS, *HOST_COLUMNS, "power_util_pct", "power_est_w")


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool | int):
        return bool(value)
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"neuron: {name} must be 0 or 1, not {value!r}")


class NeuronCollector(NeuronDeviceMeta, StreamingCollector):
    """``neuron[:max_w=W,idle_w=W,device_type=trn2,sysfs_root=DIR,executable=PATH,period_s=1,
    monitor=auto|on|off,host_metrics=0,sysfs_map=0:4+1:5,neuron_ls=PATH]``."""

    name = "neuron"
    #: Stored columns: those the schema knows (the rest of _WANTED appear once it does).
    metrics = tuple(dict.fromkeys(c for c in _WANTED if c in METRICS))

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, executable: str = "neuron-monitor",
                 sysfs_root: str | None = None, max_w: float | None = None, idle_w: float | None = None,
                 device_type: str | None = None, period_s: int = 1, monitor: str = "auto",
                 host_metrics: Any = 0, wait_s: float = 5.0, sysfs_map: Any = None,
                 neuron_ls: str = "neuron-ls") -> None:
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
        self.sysfs_root_option = sysfs_root
        self.sysfs_root = find_root(sysfs_root)
        self.max_w_option = None if max_w is None else float(max_w)
        self.idle_w_option = None if idle_w is None else float(idle_w)
        self.device_type_option = normalise_type(device_type) if device_type else None
        self.period_s = int(period_s)
        self.monitor = mode
        self.host_metrics = _flag(host_metrics, "host_metrics")
        self.wait_s = float(wait_s)
        self.sysfs_map = parse_sysfs_map(sysfs_map)
        self.neuron_ls = str(neuron_ls)
        # state
        self.max_w: float | None = None
        self.idle_w = 0.0
        self.max_w_from: str | None = None
        self.idle_w_from: str | None = None
        self.device_type: str | None = None
        self._monitor_path: str | None = None
        self._config: str | None = None
        self._first_report = threading.Event()
        self._hardware: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._devices: dict[str, int] = {}
        self._sysfs: dict[int, SysfsDevice] = {}
        self._pairing: dict[int, int] = {}
        self._pairing_note: str | None = None
        self._power: dict[int, list[PowerNode]] = {}
        self._bad_nodes: set[Path] = set()
        self._seen_errors: set[str] = set()
        self._status: dict[int, str] = {}
        self._ecc: dict[int, dict[str, int]] = {}
        self._last_poll: float | None = None

    def options(self) -> dict[str, Any]:
        return {"executable": self._monitor_path or self.executable, "sysfs_root": str(self.sysfs_root),
                "max_w": self.max_w_option, "idle_w": self.idle_w_option, "device_type": self.device_type_option,
                "period_s": self.period_s, "monitor": self.monitor, "host_metrics": self.host_metrics,
                "sysfs_map": self.sysfs_map}

    # --- discovery ---------------------------------------------------------------------------------
    def _find_monitor(self) -> str | None:
        if self.monitor == "off":
            return None
        return find_executable(self.executable, *(MONITOR_FALLBACKS if self.executable == "neuron-monitor" else ()))

    def available(self) -> tuple[bool, str]:
        devs = scan(self.sysfs_root)
        power = [i for i, d in devs.items() if d.power]
        mon = self._find_monitor()
        mon_text = f"neuron-monitor at {mon}" if mon else (
            "neuron-monitor off" if self.monitor == "off" else "neuron-monitor not found on PATH")
        if not devs and not Path("/dev/neuron0").exists():
            return False, f"no Neuron device (nothing under {self.sysfs_root}, no /dev/neuron0); {mon_text}"
        if self.monitor == "on" and not mon:
            return False, f"{len(devs)} Neuron device(s) but {mon_text}"
        if not mon and not power:
            tried = next(iter(devs.values())).tried if devs else [f"{self.sysfs_root}/neuron<N>"]
            return False, (f"{len(devs)} Neuron device(s), but {mon_text} and no sysfs power node (tried "
                           f"{'; '.join(tried)}): nothing to measure")
        how = ("power estimated from the sysfs power utilization file(s)" if power
               else "power estimated from NeuronCore utilization (no sysfs power file)")
        return True, f"{len(devs) or 'some'} Neuron device(s); {mon_text}; {how}"

    # --- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> dict[str, dict]:
        self._sysfs = scan(self.sysfs_root)
        self._monitor_path = self._find_monitor()
        if self.monitor == "on" and not self._monitor_path:
            raise CollectorError(f"{self.executable} not found on PATH (monitor=on)")
        if self._monitor_path:
            self._start_monitor(self._monitor_path)
            self._first_report.wait(self.wait_s)
        elif not any(d.power for d in self._sysfs.values()):
            tried = next(iter(self._sysfs.values())).tried if self._sysfs else [f"{self.sysfs_root}/neuron<N>"]
            raise CollectorError("neither neuron-monitor nor a sysfs power utilization node (tried "
                                 f"{'; '.join(tried)}): nothing to measure")
        with self._lock:
            hardware, info = dict(self._hardware), dict(self._info)
            seen = {int(r["device"].split(":", 1)[1]) for r in self._rows if r["device"].startswith("neuron:")}
        count = hardware.get("neuron_device_count")
        monitor_indices: list[int] | None = None
        if self._monitor_path and (isinstance(count, int) and not isinstance(count, bool) and count > 0 or seen):
            monitor_indices = sorted(set(range(count)) if isinstance(count, int) and count > 0 else set() | seen)
        indices = monitor_indices if monitor_indices is not None else sorted(self._sysfs)
        if not indices:
            self.close()
            raise CollectorError(f"no Neuron device found (nothing under {self.sysfs_root}; neuron-monitor "
                                 f"{'reported none' if self._monitor_path else 'not running'})")
        identities = None
        if monitor_indices is not None and self._sysfs and self.sysfs_map is None \
                and set(monitor_indices) != set(self._sysfs):
            ls = find_executable(self.neuron_ls, *(LS_FALLBACKS if self.neuron_ls == "neuron-ls" else ()))
            if ls:
                identities, problem = read_neuron_ls(ls)
                if problem:
                    self._note(COLLECTOR_NOTE, problem)
                    identities = identities or {}
        self._pairing, self._pairing_note = match_devices(monitor_indices, self._sysfs, identities=identities,
                                                          user_map=self.sysfs_map)
        if self._pairing_note and self._pairing_note.startswith("ambiguous"):
            self._note(COLLECTOR_NOTE, f"neuron: {self._pairing_note}")
        self._power = {i: self._sysfs[s].power for i, s in self._pairing.items() if self._sysfs[s].power}
        self.device_type = self.device_type_option or detect_type(info, hardware, self._sysfs)
        self._set_power_model()
        self._devices = {device_id(i): i for i in indices}
        return {dev: self._device_meta(i, info, hardware) for dev, i in self._devices.items()}

    def _set_power_model(self) -> None:
        m = power_model(self.device_type, self.max_w_option, self.idle_w_option)
        self.max_w, self.idle_w, self.max_w_from, self.idle_w_from = m.max_w, m.idle_w, m.max_w_from, m.idle_w_from

    def _start_monitor(self, path: str) -> None:
        fd, self._config = tempfile.mkstemp(prefix="wattprof-neuron-monitor-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"period": f"{self.period_s}s", **MONITOR_CONFIG}, f)
        try:
            self.start_process("neuron-monitor", [path, "-c", self._config])
        except OSError as e:
            raise CollectorError(f"could not start {path}: {e}") from None

    # --- the stream --------------------------------------------------------------------------------
    def _note(self, kind: str, message: str, **extra: Any) -> None:
        """Queue an event once per distinct message."""
        with self._lock:
            if message in self._seen_errors:
                return
            self._seen_errors.add(message)
        self.emit(kind, message, **extra)

    def on_line(self, line: str, t: float) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            self._note(BAD_OUTPUT, f"neuron-monitor printed a line that is not JSON ({e.msg}): {line[:120]!r}", t=t)
            return
        if not isinstance(obj, dict):
            self._note(BAD_OUTPUT, f"neuron-monitor printed a JSON {type(obj).__name__}, not a report", t=t)
            return
        hw = {k: v for k, v in (obj.get("neuron_hardware_info") or {}).items() if v not in (None, "")} \
            if isinstance(obj.get("neuron_hardware_info"), dict) else {}
        with self._lock:
            self._hardware.update(hw)
            self._info.update({k: v for k, v in report_info(obj).items() if v not in (None, "")})
            hardware = dict(self._hardware)
        samples, errors = parse_report(obj, hardware=hardware)
        for problem in errors:
            self._note(TOOL_ERROR, f"neuron-monitor: {problem}", t=t)
        self._check_ecc(obj)
        rows = []
        for s in samples:
            if s["device"] == "host" and not self.host_metrics:
                continue
            s["t"] = t
            rows.append(s)
        self.push(rows)
        self._first_report.set()

    def _check_ecc(self, obj: dict[str, Any]) -> None:
        """ECC counters (``neuron_hw_counters``) as events: any that are non-zero when first seen,
        then every change, naming the device and the counter."""
        for dev, counts in ecc_counters(obj).items():
            before = self._ecc.get(dev)
            self._ecc[dev] = counts
            for k, n in counts.items():
                old = None if before is None else before.get(k)
                if (old is None and n > 0) or (old is not None and n != old):
                    where = "device DRAM" if k.startswith("mem") else "on-chip SRAM"
                    kind = "uncorrected" if k.endswith("uncorrected") else "corrected"
                    was = "when first read" if old is None else f"was {old}"
                    self._note(ECC_ERRORS, f"neuron:{dev}: {kind} ECC errors in {where}: {k} = {n} ({was}; "
                               "neuron_hw_counters)", device=device_id(dev), counter=k, count=n, ecc=kind)

    def _read_node(self, node: PowerNode, index: int) -> tuple[str, float | None]:
        """(status, percent) of one power node; unknown formats of the raw node are reported once."""
        try:
            text = node.path.read_text()
        except OSError as e:
            return f"unreadable ({e.strerror or e})", None
        if node.kind == "raw":
            got = parse_raw_line(text)
            if got is None:
                self._bad_nodes.add(node.path)
                self._note(BAD_OUTPUT, f"neuron{index}: {node.path} holds {text.strip()[:80]!r}, not a format wattprof reads; "
                           "using the per-minute utilization node instead")
                return "unrecognised", None
            return got
        parsed = parse_minute_line(text)
        if parsed is None:
            return "malformed", None
        return parsed[0], (parsed[4] if parsed[0] == STATUS_VALID else None)

    def _attach_sysfs(self, row: dict[str, Any], index: int) -> None:
        nodes = [n for n in self._power.get(index, []) if n.path not in self._bad_nodes]
        if not nodes:
            return
        sysfs_index = self._pairing.get(index, index)
        status, used = "", nodes[-1]
        for node in nodes:
            status, pct = self._read_node(node, sysfs_index)
            used = node
            if pct is not None:
                row["power_util_pct"] = pct
                break
        state = f"{used.path.name} is {status}"
        previous = self._status.get(index)
        self._status[index] = state
        if state != previous and (previous is not None or status != STATUS_VALID):
            fallback = ("power estimated from NeuronCore utilization meanwhile" if self._proc is not None
                        else "no power estimate meanwhile")
            self.emit(POWER_SOURCE_CHANGED, f"neuron{sysfs_index}: sysfs power {state}"
                      + ("" if status == STATUS_VALID else f"; {fallback}"), device=device_id(index), status=status)

    def _estimate(self, row: dict[str, Any]) -> None:
        if self.max_w is not None:
            estimate_power(row, self.max_w, self.idle_w)

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
        rows = self.take_rows()
        for r in rows:
            if r["device"] in self._devices:
                self._attach_sysfs(r, self._devices[r["device"]])
        if self._proc is None and self._power:
            rows += self._poll_sysfs()
        for r in rows:
            if r["device"] in self._devices:
                self._estimate(r)
        return rows

    def close(self) -> None:
        self.stop_process()
        if self._config is not None:
            try:
                os.unlink(self._config)
            except OSError:
                pass
            self._config = None

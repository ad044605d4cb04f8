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
import math
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass
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
from .base import Collector
from .neuron_sysfs import (
    STATUS_VALID,
    PowerNode,
    SysfsDevice,
    find_root,
    normalise_bdf,
    parse_minute_line,
    parse_raw_line,
    scan,
)
from .nvidia_smi import EventSurfacing, LineProcess, find_executable

SYSFS_ROOT = "/sys/devices/virtual/neuron_device"
DMI_PRODUCT_NAME = Path("/sys/devices/virtual/dmi/id/product_name")
MONITOR_FALLBACKS = ("/opt/aws/neuron/bin/neuron-monitor",)
LS_FALLBACKS = ("/opt/aws/neuron/bin/neuron-ls",)
parse_power_line = parse_minute_line  # the per-minute file's format (kept for callers)

TYPE_NAMES: dict[str, str] = {"inf1": "Inferentia1", "inf2": "Inferentia2", "trn1": "Trainium1",
                              "trn2": "Trainium2", "trn3": "Trainium3"}


@dataclass(frozen=True)
class PowerDefault:
    """A device type's default maximum power and where the figure comes from."""

    max_w: float
    source: str


_THIRD_PARTY = "third-party estimate (AWS publishes no chip power; tests/fixtures/aws-neuron/README.md)"
#: Maximum power per device, watts. No Trainium3 figure is known: it stays unestimated.
POWER_DEFAULTS: dict[str, PowerDefault] = {
    "inf1": PowerDefault(75.0, _THIRD_PARTY),
    "inf2": PowerDefault(100.0, _THIRD_PARTY),
    "trn1": PowerDefault(100.0, "derived: Inferentia2's figure, since AWS's architecture pages give Trainium the same "
                                "device (2 x NeuronCore-v2, 190 BF16 TFLOPS, 32 GiB HBM at 820 GB/s); no Trainium "
                                "figure is published"),
    "trn2": PowerDefault(500.0, _THIRD_PARTY),
}
MAX_W_DEFAULTS: dict[str, float] = {k: v.max_w for k, v in POWER_DEFAULTS.items()}
#: Idle floor as a share of max_w: the sysfs figure excludes background power, so 0 W would
#: undercount. No Neuron idle power is published; 0.17 is the measured idle/limit ratio of the H100
#: capture in tests/fixtures/nvidia-h100 (120 W idle at a 700 W limit), an accelerator of the same
#: class. An assumption, labelled as one.
IDLE_FLOOR_FRACTION = 0.17
IDLE_FLOOR_SOURCE = ("assumed floor: 17 % of max_w (no Neuron idle power is published; the measured idle/limit "
                     "ratio of an H100, tests/fixtures/nvidia-h100: 120 W of 700 W)")

#: neuron_hardware_info.neuron_device_type -> type. The user guide shows ("trainium2", "v4") on
#: trn2; real reports: ("trainium", "v2") on trn1, ("inferentia2", "v3") on inf2, ("inferentia",
#: "v1") on inf1. The name decides.
_HW_TYPES: dict[str, str] = {"inferentia": "inf1", "inferentia2": "inf2", "trainium": "trn1", "trainium1": "trn1",
                             "trainium2": "trn2", "trainium3": "trn3"}
#: Instance families: trn1.2xlarge, trn1n.32xlarge, trn2.48xlarge, trn2u.48xlarge (UltraServer
#: node), trn2n (the user guide's example): a letter suffix is a variant of the same chip.
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


@dataclass(frozen=True)
class PowerModel:
    """The watts model of one device type: ``max_w`` None means no estimate."""

    max_w: float | None
    idle_w: float
    max_w_from: str | None
    idle_w_from: str | None


def power_model(device_type: str | None, max_w: float | None = None, idle_w: float | None = None) -> PowerModel:
    """``max_w``/``idle_w`` from the options, else the device type's defaults, each with its source."""
    default = POWER_DEFAULTS.get(device_type or "")
    type_name = TYPE_NAMES.get(device_type or "", "an unknown Neuron device type")
    if max_w is not None:
        mx, mx_from = float(max_w), "option max_w"
    elif default is not None:
        mx, mx_from = default.max_w, f"default for {type_name}: {default.source}"
    else:
        mx, mx_from = None, None
    if idle_w is not None:
        idle, idle_from = float(idle_w), "option idle_w"
    elif mx is not None:
        idle, idle_from = round(IDLE_FLOOR_FRACTION * mx, 1), IDLE_FLOOR_SOURCE
    else:
        idle, idle_from = 0.0, None
    if mx is not None and idle > mx:
        raise InputError(f"neuron: idle_w ({idle}) is above max_w ({mx})")
    return PowerModel(mx, idle, mx_from, idle_from)


def estimate_power(row: dict[str, Any], max_w: float, idle_w: float) -> None:
    """Set ``row["power_est_w"]``: from the sysfs percentage where the row has one, else from the
    NeuronCore utilisation; nothing when it has neither."""
    pct = row.get("power_util_pct")
    if pct is not None and not math.isnan(pct):
        row["power_est_w"] = idle_w + pct / 100.0 * max_w
        return
    util = row.get("util_pct")
    if util is not None and not math.isnan(util):
        row["power_est_w"] = idle_w + (max_w - idle_w) * min(max(util, 0.0), 100.0) / 100.0


def parse_sysfs_map(value: Any) -> dict[int, int] | None:
    """``0:4+1:5`` (neuron-monitor index : sysfs neuron<N>; pairs joined by ``+``, as a comma
    separates collector options on the command line, or by ``,`` in Python) -> {0: 4, 1: 5}."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = [tuple(part.split(":", 1)) if ":" in part else (part, None)
                 for part in re.split(r"[+,;\s]+", str(value)) if part.strip()]
    out: dict[int, int] = {}
    for a, b in items:
        try:
            out[int(a)] = int(b)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"neuron: sysfs_map must be MONITOR:SYSFS pairs joined by '+' like 0:4+1:5, "
                             f"not {value!r}") from None
        if out[int(a)] < 0 or int(a) < 0:
            raise InputError(f"neuron: sysfs_map indices must be >= 0, not {value!r}")
    if len(set(out.values())) != len(out):
        raise InputError(f"neuron: sysfs_map pairs two devices with the same sysfs neuron<N>: {value!r}")
    return out


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool | int):
        return bool(value)
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"neuron: {name} must be 0 or 1, not {value!r}")


def _span(indices: list[int]) -> str:
    return ", ".join(f"neuron{i}" for i in indices) if len(indices) <= 6 else \
        f"neuron{indices[0]}..neuron{indices[-1]} ({len(indices)})"


def match_devices(monitor: list[int] | None, sysfs: dict[int, SysfsDevice], *,
                  identities: dict[int, dict[str, str]] | None = None,
                  user_map: dict[int, int] | None = None) -> tuple[dict[int, int], str | None]:
    """Tie the devices neuron-monitor numbers to sysfs ``neuron<N>`` directories.

    Returns (device index -> sysfs index, a note when the pairing is partial or ambiguous).
    ``identities``: per neuron-monitor index, ``bdf`` / ``serial`` from ``neuron-ls -j``.
    """
    if monitor is None:
        return {i: i for i in sysfs}, None
    if user_map is not None:
        bad = sorted(s for s in user_map.values() if s not in sysfs)
        pairs = {m: s for m, s in user_map.items() if s in sysfs and m in monitor}
        note = f"sysfs paired by the sysfs_map option ({len(pairs)} device(s))"
        if bad:
            note += f"; no {_span(bad)} under the sysfs root"
        return pairs, note
    if not sysfs:
        return {}, None
    if set(monitor) == set(sysfs):
        return {i: i for i in monitor}, None
    if identities:
        by_bdf = {d.bdf: i for i, d in sysfs.items() if d.bdf}
        by_serial = {d.serial: i for i, d in sysfs.items() if d.serial}
        pairs: dict[int, int] = {}
        for m in monitor:
            ident = identities.get(m, {})
            s = by_bdf.get(normalise_bdf(ident.get("bdf")) or "") if ident.get("bdf") else None
            if s is None and ident.get("serial"):
                s = by_serial.get(str(ident["serial"]).strip().lower())
            if s is not None:
                pairs[m] = s
        if pairs:
            missing = sorted(set(monitor) - set(pairs))
            note = f"sysfs paired by PCI BDF / serial (neuron-ls -j): {len(pairs)} of {len(monitor)} device(s)"
            if missing:
                note += f"; no sysfs match for neuron:{', neuron:'.join(map(str, missing))}"
            return pairs, note
    return {}, (f"ambiguous device numbering: neuron-monitor reports {len(monitor)} device(s) numbered "
                f"{min(monitor)}..{max(monitor)}, sysfs shows {_span(sorted(sysfs))} (host-wide numbering, as in a "
                "container), and no identity ties them (neuron-monitor reports no PCI BDF or serial"
                + ("; neuron-ls -j gave none that matches" if identities is not None else "; neuron-ls not found")
                + "): sysfs power is not used; pass sysfs_map=MONITOR:SYSFS+... (e.g. 0:4+1:5) to pair them")


def read_neuron_ls(path: str, timeout_s: float = 10.0) -> tuple[dict[int, dict[str, str]] | None, str | None]:
    """``neuron-ls -j`` -> ({neuron_device: {"bdf": ..., "serial": ...}}, problem)."""
    try:
        out = subprocess.run([path, "-j"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"neuron-ls -j failed: {e}"
    if out.returncode != 0:
        return None, f"neuron-ls -j exited with {out.returncode}: {out.stderr.strip()[:200]}"
    try:
        data = json.loads(out.stdout)
    except json.JSONDecodeError as e:
        return None, f"neuron-ls -j printed no JSON ({e.msg})"
    found: dict[int, dict[str, str]] = {}
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, dict) or isinstance(entry.get("neuron_device"), bool) \
                or not isinstance(entry.get("neuron_device"), int):
            continue
        ident = {k: str(entry[v]) for k, v in (("bdf", "bdf"), ("serial", "serial_number")) if entry.get(v)}
        found[entry["neuron_device"]] = ident
    return found, None


class NeuronCollector(EventSurfacing, Collector):
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
        self._proc: LineProcess | None = None
        self._first_report = threading.Event()
        self._hardware: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._devices: dict[str, int] = {}
        self._sysfs: dict[int, SysfsDevice] = {}
        self._pairing: dict[int, int] = {}
        self._pairing_note: str | None = None
        self._power: dict[int, list[PowerNode]] = {}
        self._bad_nodes: set[Path] = set()
        self._rows: list[dict[str, Any]] = []
        self._events: list[str] = []
        self._seen_errors: set[str] = set()
        self._status: dict[int, str] = {}
        self._ecc: dict[int, dict[str, int]] = {}
        self._last_poll: float | None = None
        self._lock = threading.Lock()

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
                    self._note(problem)
                    identities = identities or {}
        self._pairing, self._pairing_note = match_devices(monitor_indices, self._sysfs, identities=identities,
                                                          user_map=self.sysfs_map)
        if self._pairing_note and self._pairing_note.startswith("ambiguous"):
            self._note(f"neuron: {self._pairing_note}")
        self._power = {i: self._sysfs[s].power for i, s in self._pairing.items() if self._sysfs[s].power}
        self.device_type = self._detect_type(info, hardware)
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
        found = type_from_name(str(hardware.get("neuron_device_type", "")))
        if found:
            return found
        for dev in self._sysfs.values():  # info/architecture/{device_name,device_type,instance_type}
            for key in ("device_name", "device_type", "instance_type"):
                found = type_from_name(dev.names.get(key)) or type_from_instance(f"{dev.names.get(key, '')}.")
                if found:
                    return found
        return None

    def _no_node_reason(self, index: int) -> str:
        if self._pairing_note and self._pairing_note.startswith("ambiguous"):
            return self._pairing_note
        if not self._sysfs:
            return f"no Neuron sysfs tree at {self.sysfs_root}"
        s = self._pairing.get(index)
        if s is None:
            return f"no sysfs neuron<N> is tied to this device ({self._pairing_note or 'none matches'})"
        return f"no sysfs power node (tried {'; '.join(self._sysfs[s].tried)})"

    def power_source(self, index: int) -> str:
        type_name = TYPE_NAMES.get(self.device_type or "", "this Neuron device type (unknown)")
        if self.max_w is None:
            return (f"none: no known maximum power for {type_name} (AWS publishes no chip power, and no estimate is "
                    "on record); NeuronCore utilization is kept; pass max_w=WATTS (and idle_w=WATTS) to estimate")
        watts = f"max_w={self.max_w:g} W ({self.max_w_from}), idle_w={self.idle_w:g} W ({self.idle_w_from})"
        util = "idle_w + (max_w - idle_w) x NeuronCore utilization (neuron-monitor)"
        nodes = self._power.get(index)
        if nodes:
            what = {"raw": "live per-die power utilization, driver 2.29+",
                    "minute": "per-minute average, held until the next minute's"}
            used = "; else ".join(f"{n.path} ({what[n.kind]})" for n in nodes)
            text = (f"estimated: idle_w + max_w x neuron sysfs power utilization (percent of max power, background "
                    f"power backed out) from {used}")
            if self._proc is not None:
                text += f"; while it has no valid data: {util}"
            return f"{text}; {watts}"
        if self._proc is not None:
            return f"estimated: utilization-based, {util}; {self._no_node_reason(index)}; {watts}"
        return f"none: {self._no_node_reason(index)} and no neuron-monitor"

    def _device_meta(self, index: int, info: dict[str, Any], hardware: dict[str, Any]) -> dict[str, Any]:
        type_name = TYPE_NAMES.get(self.device_type or "")
        meta: dict[str, Any] = {
            "kind": "neuron", "vendor": "aws", "neuron_index": index, "collector": self.name,
            "name": (type_name or "AWS Neuron device") + (f" ({info['instance_type']})" if info.get("instance_type") else ""),
            "power_source": self.power_source(index),
            "power_estimated": self.max_w is not None,
            "max_w": self.max_w, "idle_w": self.idle_w if self.max_w is not None else None,
            "max_w_from": self.max_w_from, "idle_w_from": self.idle_w_from,
            "timestamps": "stamped on arrival (neuron-monitor reports carry no time)",
        }
        s = self._pairing.get(index)
        if s is not None:
            meta["sysfs_device"] = str(self._sysfs[s].path)
            for k, v in (("serial", self._sysfs[s].serial), ("pci_bdf", self._sysfs[s].bdf)):
                if v:
                    meta[k] = v
        if self._pairing_note:
            meta["sysfs_pairing"] = self._pairing_note
        for k in ("instance_type", "instance_id", "instance_region"):
            if info.get(k):
                meta[k] = info[k]
        for k in ("neuron_device_type", "neuron_device_version", "neuroncore_version",
                  "neuroncore_per_device_count", "logical_neuroncore_config", "neuron_device_memory_size"):
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
        self._check_ecc(obj)
        rows = []
        for s in samples:
            if s["device"] == "host" and not self.host_metrics:
                continue
            s["t"] = t
            rows.append(s)
        with self._lock:
            self._rows.extend(rows)
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
                    self._note(f"neuron:{dev}: {kind} ECC errors in {where}: {k} = {n} ({was}; neuron_hw_counters)")

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
                self._note(f"neuron{index}: {node.path} holds {text.strip()[:80]!r}, not a format wattprof reads; "
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
            with self._lock:
                self._events.append(f"neuron{sysfs_index}: sysfs power {state}"
                                    + ("" if status == STATUS_VALID else f"; {fallback}"))

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
        self._raise_pending()
        with self._lock:
            rows, self._rows = self._rows, []
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
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        if self._config is not None:
            try:
                os.unlink(self._config)
            except OSError:
                pass
            self._config = None

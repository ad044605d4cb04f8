"""The Neuron driver's sysfs tree: devices, their identity, and where the power node is.

Facts and sources: ``tests/fixtures/aws-neuron/README.md``. In short:

- Devices are ``neuron<N>`` directories under ``/sys/devices/virtual/neuron_device`` (the Neuron
  sysfs user guide); ``/sys/class/neuron_device`` is also tried. N is the driver's (host-wide)
  device number.
- Power (driver 2.21.37+): ``neuron<N>/stats/power/utilization`` holds
  ``STATUS,epoch_s,min_pct,max_pct,avg_pct`` for the previous wall-clock minute (percent of the
  device's maximum power with background power backed out; the larger die on two-die devices;
  ``POWER_STATUS_VALID`` needs at least 60 firmware samples in the minute, else ``NO_DATA``).
  Driver 2.29 added ``utilization_raw``: live per-die power utilisation from a cached sampler,
  refreshed at the firmware rate. Its line format is not documented in the sources we have:
  :func:`parse_raw_line` accepts the per-minute format, or per-die percentages (optionally after a
  status and an epoch, optionally ``name: value``), and takes the largest die, as the driver does
  for the per-minute file. Anything else is reported and the per-minute file is used.
- Driver 2.31 reorganised the tree (not backwards compatible). Rather than trusting one path, the
  node is searched: the pre-2.31 path first, then any ``power/utilization_raw`` or
  ``power/utilization`` file under ``neuron<N>/`` up to :data:`SEARCH_DEPTH` levels down, outside
  the per-core ``neuron_core<K>`` subtrees (power is per device). When none is found,
  :attr:`SysfsDevice.tried` says where it looked.
- Identity: ``neuron<N>/info/serial_number`` (sysfs user guide) and the PCI address (BDF) where
  ``neuron<N>/device`` links to a PCI device; neither is in neuron-monitor's reports.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOTS = ("/sys/devices/virtual/neuron_device", "/sys/class/neuron_device")
LEGACY_POWER_DIR = Path("stats") / "power"
#: Preferred first: the live node, then the per-minute one.
POWER_NODES = ("utilization_raw", "utilization")
SEARCH_DEPTH = 4
STATUS_VALID = "POWER_STATUS_VALID"
_BDF_RE = re.compile(r"^(?:[0-9a-f]{4}:)?([0-9a-f]{2}:[0-9a-f]{2}\.[0-7])$", re.IGNORECASE)


@dataclass
class PowerNode:
    path: Path
    #: ``raw`` (live, driver 2.29+) or ``minute`` (per-minute average, driver 2.21.37+).
    kind: str


@dataclass
class SysfsDevice:
    index: int
    path: Path
    power: list[PowerNode] = field(default_factory=list)
    #: Where the power node was looked for (filled when none was found).
    tried: list[str] = field(default_factory=list)
    serial: str | None = None
    bdf: str | None = None
    names: dict[str, str] = field(default_factory=dict)


def normalise_bdf(value: str | None) -> str | None:
    """``0000:cc:00.0`` / ``cc:00.0`` -> ``cc:00.0`` (lower case); None when it is not a BDF."""
    m = _BDF_RE.match((value or "").strip())
    return m.group(1).lower() if m else None


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return text or None


def find_power_nodes(device_dir: Path) -> tuple[list[PowerNode], list[str]]:
    """The device's power nodes, preferred first, and the places looked at (for the message when
    there are none)."""
    legacy = [device_dir / LEGACY_POWER_DIR / name for name in POWER_NODES]
    found = [p for p in legacy if p.is_file()]
    if not found:
        hits: dict[str, list[Path]] = {name: [] for name in POWER_NODES}
        base_depth = len(device_dir.parts)
        for top, dirs, files in os.walk(device_dir):
            depth = len(Path(top).parts) - base_depth
            if depth >= SEARCH_DEPTH:
                dirs[:] = []
            # power is per device (neuron_power.c): the per-core subtrees (thousands of counters) are skipped
            dirs[:] = sorted(d for d in dirs if not re.fullmatch(r"neuron_core\d+", d))
            if Path(top).name == "power":
                for name in POWER_NODES:
                    if name in files:
                        hits[name].append(Path(top) / name)
        found = [sorted(hits[name])[0] for name in POWER_NODES if hits[name]]
    nodes = [PowerNode(p, "raw" if p.name == "utilization_raw" else "minute") for p in found]
    tried = [str(p) for p in legacy] + [f"{device_dir}/**/power/{{{','.join(POWER_NODES)}}} (depth <= {SEARCH_DEPTH}, "
                                        "outside neuron_core*)"]
    return nodes, ([] if nodes else tried)


def scan(root: Path) -> dict[int, SysfsDevice]:
    """``neuron<N>`` directories under ``root`` with their power nodes and identity."""
    out: dict[int, SysfsDevice] = {}
    try:
        entries = list(root.iterdir())
    except OSError:
        return out
    for p in entries:
        m = re.fullmatch(r"neuron(\d+)", p.name)
        if not (m and p.is_dir()):
            continue
        dev = SysfsDevice(int(m.group(1)), p)
        dev.power, dev.tried = find_power_nodes(p)
        serial = _read(p / "info" / "serial_number")
        dev.serial = serial.lower() if serial else None
        link = p / "device"
        if link.is_symlink():
            dev.bdf = normalise_bdf(os.path.basename(os.path.realpath(link)))
        for key in ("device_name", "instance_type", "arch_type", "device_type"):
            value = _read(p / "info" / "architecture" / key)
            if value:
                dev.names[key] = value
        out[dev.index] = dev
    return dict(sorted(out.items()))


def find_root(explicit: str | None) -> Path:
    """``explicit`` if given; else the first of :data:`ROOTS` that holds a ``neuron<N>`` directory
    (the first one when none does)."""
    if explicit:
        return Path(explicit)
    for r in ROOTS:
        try:
            if any(re.fullmatch(r"neuron\d+", p.name) for p in Path(r).iterdir()):
                return Path(r)
        except OSError:
            continue
    return Path(ROOTS[0])


def parse_minute_line(text: str) -> tuple[str, float, float, float, float] | None:
    """``POWER_STATUS_VALID,1789180860,0.86,25.00,18.86`` -> (status, epoch_s, min, max, avg)."""
    parts = [p.strip() for p in text.strip().split(",")]
    if len(parts) != 5 or not parts[0].startswith("POWER_STATUS_"):
        return None
    try:
        return parts[0], float(parts[1]), float(parts[2]), float(parts[3]), float(parts[4])
    except ValueError:
        return None


def parse_raw_line(text: str) -> tuple[str, float | None] | None:
    """A ``utilization_raw`` reading -> (status, percent of max power: the largest die), or None when
    the text is in no format this understands. A status other than VALID gives (status, None)."""
    minute = parse_minute_line(text)
    if minute is not None:
        return minute[0], (minute[4] if minute[0] == STATUS_VALID else None)
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    status = STATUS_VALID
    if tokens and tokens[0].startswith("POWER_STATUS_"):
        status = tokens.pop(0)
        if status != STATUS_VALID:
            return status, None
    values: list[float] = []
    for t in tokens:
        t = re.sub(r"^[A-Za-z_][\w.]*[:=]", "", t)
        if not t:
            continue
        try:
            values.append(float(t.rstrip("%")))
        except ValueError:
            return None
    if values and values[0] >= 1e9 and values[0] == int(values[0]):  # a leading epoch timestamp
        values = values[1:]
    if not values or any(not 0.0 <= v <= 100.0 for v in values):
        return None
    return status, max(values)

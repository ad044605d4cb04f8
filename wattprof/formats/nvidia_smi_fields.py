"""The vocabulary of ``nvidia-smi --query-gpu`` CSV: which printed field becomes which schema
column, in which unit, and how one printed value, header token or timestamp is read.

Shared by the file reader and the live line parser (:mod:`wattprof.formats.nvidia_smi_csv`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError

MIB = 1024.0 * 1024.0
TS_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
TS_RE = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$")
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
HEX_RE = re.compile(r"^0[xX][0-9a-fA-F]+$")
HEADER_UNIT_RE = re.compile(r"^(?P<name>[^\[\]]*?)\s*\[(?P<unit>[^\[\]]*)\]$")
MISSING = frozenset({"N/A", "Not Supported", "Unknown Error"})

TIMESTAMP = "timestamp"
INDEX = "index"
#: Identity fields (name -> key in the devices table).
IDENTITY: dict[str, str] = {"uuid": "uuid", "gpu_uuid": "uuid", "name": "name", "gpu_name": "name"}


@dataclass(frozen=True)
class FieldSpec:
    """How one nvidia-smi field becomes one schema column."""

    column: str
    #: Units nvidia-smi prints after the value (None: a bare number).
    unit: str | None = None
    #: Factor from nvidia-smi's unit to the schema column's unit.
    scale: float = 1.0
    #: Hexadecimal bitmask (``0x0000000000000004``) instead of a decimal number.
    hex: bool = False

    def convert(self, raw: str) -> float:
        """One printed value -> float in the schema unit; NaN when nvidia-smi says not available."""
        text = raw.strip()
        if is_missing(text):
            return math.nan
        number, _, unit = text.partition(" ")
        unit = unit.strip()
        if unit and unit != self.unit:
            raise ValueError(f"unit {unit!r}, expected {self.unit or 'none'}")
        if self.hex:
            if not HEX_RE.match(number) or len(number) > 18:
                raise ValueError("expected a hexadecimal bitmask like 0x0000000000000004 (64 bits at most)")
            return float(int(number, 16))
        if not NUMBER_RE.match(number):
            raise ValueError(f"expected a number{' in ' + self.unit if self.unit else ''} or [N/A]")
        value = float(number) * self.scale
        if not math.isfinite(value):
            raise ValueError("number too large")
        if value < 0 and self.column != "temp_c":
            raise ValueError("negative: power, utilisation, clocks and memory are never negative")
        return value


# Order matters: where several fields feed one column, the first listed wins (when not NaN).
SPECS: dict[str, FieldSpec] = {
    "power.draw.instant": FieldSpec("power_w", "W"),
    "gpu.power.draw.instant": FieldSpec("power_w", "W"),
    "power.draw.average": FieldSpec("power_avg_w", "W"),
    "gpu.power.draw.average": FieldSpec("power_avg_w", "W"),
    # power.draw is the 1 s trailing average on Ampere and newer (instantaneous on older GPUs).
    "power.draw": FieldSpec("power_avg_w", "W"),
    "enforced.power.limit": FieldSpec("power_limit_w", "W"),
    "gpu.power.current_limit": FieldSpec("power_limit_w", "W"),
    "power.limit": FieldSpec("power_limit_w", "W"),
    "gpu.power.requested_limit": FieldSpec("power_limit_w", "W"),
    "utilization.gpu": FieldSpec("util_pct", "%"),
    "utilization.memory": FieldSpec("mem_util_pct", "%"),
    "memory.used": FieldSpec("mem_used_bytes", "MiB", MIB),
    "memory.total": FieldSpec("mem_total_bytes", "MiB", MIB),
    "clocks.current.sm": FieldSpec("sm_clock_mhz", "MHz"),
    "clocks.sm": FieldSpec("sm_clock_mhz", "MHz"),
    "clocks.current.memory": FieldSpec("mem_clock_mhz", "MHz"),
    "clocks.mem": FieldSpec("mem_clock_mhz", "MHz"),
    "temperature.gpu": FieldSpec("temp_c", "C"),
    "clocks_event_reasons.active": FieldSpec("throttle_reasons", hex=True),
    "clocks_throttle_reasons.active": FieldSpec("throttle_reasons", hex=True),
}
# nvidia-smi (driver 580) has no energy-counter query field: energy_j never comes from this format.

#: nvidia-smi field name -> wattprof schema column (fields not listed are ignored).
FIELD_MAP: dict[str, str] = {name: spec.column for name, spec in SPECS.items()}
KNOWN_FIELDS = frozenset(SPECS) | frozenset(IDENTITY) | {TIMESTAMP, INDEX}
NAME_STARTS = frozenset(name[0] for name in KNOWN_FIELDS)
#: A line where some value starts like a field name: only those can be header lines.
MAYBE_HEADER_RE = re.compile(r"(?:^|,)\s*[" + "".join(sorted(NAME_STARTS)) + "]")



#: Time zones are within UTC-12..UTC+14 (the vLLM reader takes the same range).
MAX_UTC_OFFSET_H = 14.0


def check_utc_offset(hours: float) -> float:
    """``hours`` as a float if it is a UTC offset (finite, within +/-24 h), else :class:`InputError`."""
    try:
        h = float(hours)
    except (TypeError, ValueError, OverflowError):
        h = math.nan
    if not (math.isfinite(h) and abs(h) <= MAX_UTC_OFFSET_H):
        raise InputError(f"--utc-offset {str(hours)[:40]}: expected hours between {-MAX_UTC_OFFSET_H:g} and "
                         f"{MAX_UTC_OFFSET_H:g} (local time = UTC + HOURS)")
    return h


# --- small helpers ----------------------------------------------------------------------------

def is_missing(text: str) -> bool:
    return text in MISSING or (text.startswith("[") and text.endswith("]"))


def split_line(line: str) -> list[str]:
    return list(map(str.strip, line.split(",")))


def header_name(token: str) -> tuple[str, str | None]:
    """``power.draw [W]`` -> (``power.draw``, ``W``); ``index`` -> (``index``, None)."""
    m = HEADER_UNIT_RE.match(token.strip())
    if m:
        return m["name"].strip(), m["unit"].strip()
    return token.strip(), None


def is_header(values: Sequence[str]) -> bool:
    # A field name starts with one of a few lowercase letters; data values (digits, "NVIDIA ...",
    # "GPU-...", "[N/A]") almost never do, so the regex runs on a handful of tokens, not every one.
    return any(v[:1] in NAME_STARTS and header_name(v)[0] in KNOWN_FIELDS for v in values)


def to_unix(stamps: np.ndarray, utc_offset_h: float) -> np.ndarray:
    """nvidia-smi timestamps -> Unix seconds (float64); NaN where unparseable."""
    dt = pd.to_datetime(pd.Series(stamps, dtype=object), format=TS_FORMAT, errors="coerce")
    bad = dt.isna().to_numpy()
    us = dt.to_numpy(dtype="datetime64[us]").astype(np.int64)
    out = (us - round(utc_offset_h * 3600e6)) / 1e6
    out[bad] = np.nan
    return out



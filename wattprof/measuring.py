"""One line that says what a run measures, printed when recording starts.

``measuring: gpu:0 (NVML energy counter), host (estimate: no RAPL zones under /sys/...)``: a run
that silently fell back to host-only estimates is then visible before the user's code even starts.
Reads only the devices' metadata (``power_source`` as the collectors write it).
"""

from __future__ import annotations

from typing import Any


def _short(power_source: str | None) -> str:
    """``"measured: NVML energy counter, instant (...) and averaged power"`` -> ``"NVML energy counter"``."""
    if not power_source:
        return "no power source"
    kind, sep, rest = power_source.partition(":")
    kind = kind.strip().lower()
    if not sep:  # e.g. "replayed NVML trace (energy counter, ...)": "replayed NVML trace: energy counter, ..."
        head, _, inner = power_source.split(";")[0].partition("(")
        return f"{head.strip()}: {inner.rstrip(') ')}" if inner else head.strip()
    if kind == "measured":
        return rest.split(",")[0].split(";")[0].strip()
    if kind == "estimated":
        reason = rest.rsplit(";", 1)[1].strip() if ";" in rest else ""
        return f"estimate: {reason}" if reason else "estimate"
    if kind == "none":
        return "no power: " + rest.split(";")[0].split("(")[0].strip()
    return power_source.split(";")[0].split("(")[0].strip()


def measuring_line(devices: dict[str, dict[str, Any]]) -> str:
    """The one line recording starts with (without a trailing newline)."""
    if not devices:
        return "measuring: nothing (no collector opened a device: see `wattprof collectors`)"
    parts = [f"{dev} ({_short(info.get('power_source'))})" for dev, info in devices.items()]
    return "measuring: " + ", ".join(parts)

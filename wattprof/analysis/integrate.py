"""Energy from readings as they arrive: the rules every live figure uses.

The live status line (:mod:`wattprof.live`) and the live Prometheus endpoint
(:mod:`wattprof.exporters.prometheus`) see one latest reading per device at a time; they keep an
:class:`EnergyAccumulator`. The report's curves (:mod:`wattprof.analysis.energy`) apply the same
two rules to whole arrays:

- a hardware counter: the sum of its increments; an increment below zero (the counter went
  backwards: a reset) counts as 0 (:func:`counter_increments`);
- no counter: trapezoids of power between successive reading times (:func:`trapezoids`).

Which reading is "the device's power now": :data:`POWER_READINGS`, the instant reading first.
(The report's *energy* ranks the 1 s averaged reading above the instant one, deconvolved
(``schema.ENERGY_SOURCES``); live figures have no later samples to deconvolve with.)
Pure: no I/O; :class:`EnergyAccumulator` only holds state (thread-safe).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..power_columns import POWER_PREFERENCE, POWER_SOURCE

#: (column, energy source) of a device's power readings, best first for "its power now"
#: (the rule's one home: :mod:`wattprof.power_columns`)
POWER_READINGS: tuple[tuple[str, str], ...] = tuple((c, POWER_SOURCE[c]) for c in POWER_PREFERENCE)


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing, not a number, NaN or infinite."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def latest_power(row: Mapping[str, Any]) -> tuple[float, str] | None:
    """The device's power in ``row`` (watts) and its source (instant_power, averaged_power,
    estimate): the first reading of :data:`POWER_READINGS` that is a finite number."""
    for col, source in POWER_READINGS:
        v = finite(row.get(col))
        if v is not None:
            return v, source
    return None


def counter_increment(prev_j: float, cur_j: float) -> float:
    """One increment of a cumulative energy counter; one that went backwards (a reset) counts 0."""
    return max(0.0, cur_j - prev_j)


def trapezoid(t0: float, p0: float, t1: float, p1: float) -> float:
    """Energy (J) between two power readings: the trapezoid."""
    return (t1 - t0) * (p0 + p1) / 2.0


def counter_increments(counter_j: np.ndarray) -> tuple[np.ndarray, int]:
    """Increments of a cumulative energy counter and how many went backwards (counted as 0, as
    :func:`counter_increment` does one at a time)."""
    d = np.diff(np.asarray(counter_j, dtype=float))
    back = int((d < 0).sum())
    return (np.clip(d, 0, None) if back else d), back


def trapezoids(t: np.ndarray, power_w: np.ndarray) -> np.ndarray:
    """Energy (J) of each interval between successive readings (:func:`trapezoid`, for arrays)."""
    t = np.asarray(t, dtype=float)
    p = np.asarray(power_w, dtype=float)
    return np.diff(t) * (p[1:] + p[:-1]) / 2.0


@dataclass
class DeviceEnergy:
    """One device's energy so far: ``source`` counter, instant_power, averaged_power, estimate or
    none (no usable reading yet); ``intervals``: how many increments were added."""

    source: str
    energy_j: float = 0.0
    last_t: float | None = None
    last_counter: float | None = None
    last_power: float | None = None
    power_w: float | None = None
    intervals: int = 0

    @property
    def known(self) -> bool:
        """True once there is an energy figure: a counter (from its first reading; 0 J then), or
        power over at least one interval."""
        return self.source == "counter" or self.intervals > 0


class EnergyAccumulator:
    """Energy per device accumulated from successive latest readings: counter increments (a
    counter that goes backwards restarts the count), else trapezoids of power between reading
    times. Observing the same reading twice (same ``t``, or an older one) adds nothing."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceEnergy] = {}
        self._lock = threading.Lock()

    def observe(self, snapshot: Mapping[str, Mapping[str, Any]]) -> None:
        """Add ``{device: latest reading}`` (a recorder's ``LiveStats.last`` has this shape)."""
        with self._lock:
            for device, row in snapshot.items():
                self._observe(str(device), row)

    def _observe(self, device: str, row: Mapping[str, Any]) -> None:
        t = finite(row.get("t"))
        counter = finite(row.get("energy_j"))
        power, psource = latest_power(row) or (None, None)
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = DeviceEnergy(source="counter" if counter is not None else (psource or "none"))
        if t is not None and d.last_t is not None and t <= d.last_t:
            return  # already seen
        if power is not None:
            d.power_w = power
        if counter is not None:
            if d.last_counter is not None:
                d.energy_j += counter_increment(d.last_counter, counter)
                d.intervals += 1
            d.last_counter = counter
            d.source = "counter"
        elif power is not None and t is not None and d.source != "counter":
            # a counter device missing one counter reading integrates nothing: its next increment
            # covers the whole span (adding power too would count that time twice)
            if d.last_power is not None and d.last_t is not None:
                d.energy_j += trapezoid(d.last_t, d.last_power, t, power)
                d.intervals += 1
            d.source = psource or d.source
        d.last_power = power
        if t is not None:
            d.last_t = t

    def state(self) -> dict[str, DeviceEnergy]:
        """A copy of every device's figures (safe to read while readings keep arriving)."""
        with self._lock:
            return {k: replace(v) for k, v in self.devices.items()}

"""The energy boundary: which devices a run's totals cover. The one home of the rule.

Measured accelerators; else estimated ones (an estimate is never summed with a measurement); else
the host, which is otherwise reported on its own line. Devices without any power data are never
in it. Used by the report (:func:`wattprof.reports.build.boundary_devices`) and by the live
"energy so far" (:func:`wattprof.live.energy_so_far`), so both always cover the same devices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def boundary(items: Iterable[T], kind: Callable[[T], str], source: Callable[[T], str]) -> list[T]:
    """The items (devices, curves, ...) the totals cover; ``kind`` gives an item's device kind
    (``gpu``, ``neuron``, ``host``, ...) and ``source`` its energy source (``none``, ``estimate``, ...)."""
    usable = [i for i in items if source(i) != "none"]
    accel = [i for i in usable if kind(i) != "host"]
    measured = [i for i in accel if source(i) != "estimate"]
    return measured or accel or [i for i in usable if kind(i) == "host"]

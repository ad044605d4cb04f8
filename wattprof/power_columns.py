"""Which power column to read when a device has several: the one home of the rule.

A device's samples may carry instant power (``power_w``), the averaged reading (``power_avg_w``,
a trailing 1 s mean on NVIDIA Ampere and newer) and an estimate (``power_est_w``, never a
measurement). To *show* or *sample* one power figure (live status lines, exporters, mean/max power,
plots, checks), prefer the instant reading, then the averaged one, then the estimate:
:data:`POWER_PREFERENCE`. Measurements only (a check against readings, a bottleneck verdict)
use :data:`MEASURED_POWER`, never an estimate.

This is not the order in which *energy* is integrated: :data:`wattprof.schema.ENERGY_SOURCES`
ranks the deconvolved averaged reading above instant power for energy (benchmarks/accuracy.py).

Pure and dependency-free: takes a pandas DataFrame (anything with ``columns`` and column access)
or a sample row (a mapping).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Power columns, best first for reading one power figure: instant, averaged, estimate.
POWER_PREFERENCE: tuple[str, ...] = ("power_w", "power_avg_w", "power_est_w")
#: The measured power columns, best first (no estimate).
MEASURED_POWER: tuple[str, ...] = POWER_PREFERENCE[:2]
#: Power column -> the energy source it stands for (:data:`wattprof.schema.SOURCE_COLUMN`'s inverse).
POWER_SOURCE: dict[str, str] = {"power_w": "instant_power", "power_avg_w": "averaged_power",
                                "power_est_w": "estimate"}


def preferred_power_column(frame: Any, *, measured_only: bool = False, min_values: int = 1) -> str | None:
    """The first power column of ``frame`` (a DataFrame) holding at least ``min_values`` values,
    in :data:`POWER_PREFERENCE` order (:data:`MEASURED_POWER` with ``measured_only``); None when
    it has none."""
    for col in MEASURED_POWER if measured_only else POWER_PREFERENCE:
        if col in frame.columns and int(frame[col].notna().sum()) >= min_values:
            return col
    return None


def row_power(row: Mapping[str, Any], *, measured_only: bool = False) -> tuple[float, str] | None:
    """``(watts, column)`` of one sample row: its first power column with a finite value."""
    for col in MEASURED_POWER if measured_only else POWER_PREFERENCE:
        v = row.get(col)
        if v is None or isinstance(v, bool):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            return x, col
    return None

"""Clock offsets, one home for every estimator (pure functions of DataFrames):

- :mod:`.activity`: steps recorded on a foreign clock (a benchmark client's ``perf_counter``)
  against the samples' GPU activity: :func:`refine_offset`;
- :mod:`.nodes`: one node of a multi-node run against the reference node, from matching steps
  or correlated power: :func:`offset_from_steps`, :func:`offset_from_power`;
- :mod:`.fft`: the FFT cross-correlation both use (every lag at once).
"""

from __future__ import annotations

from .activity import METRICS, NVML_INSTANT_WINDOW_S, OffsetEstimate, refine_offset
from .nodes import (
    MAX_POWER_LAG_S,
    MIN_MATCHED_STEPS,
    MIN_POWER_CORRELATION,
    POWER_GRID_S,
    ClockOffset,
    offset_from_power,
    offset_from_steps,
)

__all__ = ["MAX_POWER_LAG_S", "METRICS", "MIN_MATCHED_STEPS", "MIN_POWER_CORRELATION", "NVML_INSTANT_WINDOW_S",
           "POWER_GRID_S", "ClockOffset", "OffsetEstimate", "offset_from_power", "offset_from_steps", "refine_offset"]

"""Limits made from the median sample interval, without a median where the floor wins.

Several rules take ``max(factor x median interval, floor)``: a gap is longer than 5 median
intervals and 1 s (:mod:`.energy`, :mod:`.quality`); a bottleneck sample holds its value at most
2.5 median intervals or 1 s (:mod:`.bottleneck`). On a run sampled fast enough (10 Hz: 5 x 0.1 s
< 1 s) the floor wins, and that is known without the median: when more than half of the
intervals are small enough, so is the median. :func:`scaled_median_or_floor` checks that in one
pass and selects the median (over every interval: the costly part on a week of samples) only when
it can matter. The value is the direct formula's, NaN included.
"""

from __future__ import annotations

import numpy as np


def scaled_median_or_floor(x: np.ndarray, factor: float, floor: float) -> float:
    """``max(factor * float(np.median(x)), floor)`` for a non-empty ``x`` and ``factor > 0``."""
    n = len(x)
    if n and factor > 0 and not np.isnan(x).any() and int(np.count_nonzero(x * factor <= floor)) > n // 2:
        # the middle values of the sorted x (x[n // 2], and x[n // 2 - 1]) are among them, so the
        # median (one of them, or their mean) is too: factor * median <= floor
        return float(floor)
    return max(factor * float(np.median(x)), floor)


#: Samples further apart than max(GAP_FACTOR x the median interval, GAP_MIN_S) bound a gap: power is
#: not integrated across it (a DST jump in a log, a collector that stopped); energy stays flat there
#: and the report flags the gap (:mod:`.energy`, :mod:`.quality`).
GAP_FACTOR = 5.0
GAP_MIN_S = 1.0


def gap_limit(intervals: np.ndarray) -> float:
    """The longest interval between sorted samples that is not a gap (``intervals``: ``np.diff(t)``)."""
    return scaled_median_or_floor(intervals, GAP_FACTOR, GAP_MIN_S)

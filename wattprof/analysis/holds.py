"""Time-weighted integrals of a device's samples over many windows at once.

Each sample holds its value from the half-way point to its previous sample to the half-way point
to its next one, but no farther than max(:data:`HOLD_FACTOR` median sample periods,
:data:`MIN_HOLD_S`) to either side (NVML utilisation and power readings are themselves averages
over up to 1 s), so a real hole in the trace stays a hole; the first and last samples reach as far
outwards as inwards. The integral of that step function is piecewise linear, so a window's
integral is ``F(b) - F(a)``, needed at the window edges only. Used by :mod:`.bottleneck`.
Pure: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .periods import scaled_median_or_floor

#: A sample holds its value at most max(HOLD_FACTOR median periods, MIN_HOLD_S) to either side.
HOLD_FACTOR = 2.5
MIN_HOLD_S = 1.0
#: Spacing assumed for a column with a single sample (seconds).
DEFAULT_PERIOD_S = 0.5


@dataclass
class Holds:
    """Where each sample's value holds: ``[lo_i, lo_i + w_i]``, sorted and disjoint. The
    cumulative integral of a column is then linear inside each hold and flat between holds, so
    its value at any time ``q`` is the sum over the holds before ``q`` plus the part of the hold
    ``q`` falls in: evaluated at the windows' edges only, shared by every column a device has at
    each sample. The sums over the holds before the edges are sums between consecutive edges
    (``np.add.reduceat``) added up: no running sum over every sample."""

    w: np.ndarray
    #: per window edge (``a`` then ``b``): the index of the last hold starting at or before it, and
    #: how far into that hold it lies (0 before the first hold)
    k: np.ndarray
    into: np.ndarray
    covered: np.ndarray
    #: the distinct holds the edges fall in (``cuts``, sorted) and each edge's place among them
    cuts: np.ndarray
    where: np.ndarray

    @classmethod
    def of(cls, t: np.ndarray, a: np.ndarray, b: np.ndarray) -> Holds:
        dt = np.diff(t)
        pos = dt if (dt > 0).all() else dt[dt > 0]
        hold = scaled_median_or_floor(pos, HOLD_FACTOR, MIN_HOLD_S) if pos.size else \
            max(HOLD_FACTOR * DEFAULT_PERIOD_S, MIN_HOLD_S)
        half = np.minimum(dt / 2.0, hold, out=dt)
        del pos
        # The first and last samples reach as far out as they reach in.
        first = half[0] if half.size else DEFAULT_PERIOD_S / 2.0
        last = half[-1] if half.size else DEFAULT_PERIOD_S / 2.0
        lo = np.empty(len(t))
        lo[0] = t[0] - first
        np.subtract(t[1:], half, out=lo[1:])
        w = np.empty(len(t))  # (t + the half after) - lo
        np.add(t[:-1], half, out=w[:-1])
        w[-1] = t[-1] + last
        np.subtract(w, lo, out=w)
        del half
        q = np.concatenate([a, b])
        k = np.searchsorted(lo, q, "right") - 1
        kk = np.clip(k, 0, None)
        into = np.where(k >= 0, np.clip(q - lo[kk], 0.0, w[kk]), 0.0)
        cuts, where = np.unique(kk, return_inverse=True)
        h = cls(w, k, into, np.empty(0), cuts, where.ravel())
        h.covered = h._between(w, None)
        return h

    def _between(self, vw: np.ndarray, v: np.ndarray | None) -> np.ndarray:
        """F(b) - F(a) for each window, F the integral of held values ``v`` (``vw``: ``v`` times the
        holds' widths; ``v`` None: 1 everywhere)."""
        k = self.k
        kk = np.clip(k, 0, None)
        # sum of vw over the holds before each distinct cut: the part before the first cut, then
        # the sums between consecutive cuts added up
        if len(self.cuts):
            parts = np.add.reduceat(vw, self.cuts)[:-1]
            head = float(vw[:self.cuts[0]].sum())
            upto = head + np.concatenate([[0.0], np.cumsum(parts)])
            before = np.where(k >= 1, upto[self.where], 0.0)
        else:
            before = np.zeros(len(k))
        f = np.where(k >= 0, before + (self.into if v is None else v[kk] * self.into), 0.0)
        n = len(f) // 2
        return f[n:] - f[:n]

    def integral(self, v: np.ndarray) -> np.ndarray:
        """Integral of the held values ``v`` over each window."""
        return self._between(v * self.w, v)


def window_integrals(
    t: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray, shared: Holds | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Integral of the held values and covered seconds over each window ``[a_i, b_i]``; ``shared``:
    the holds of ``t`` itself (every time finite), used when ``v`` has a value at every sample."""
    ok = np.isfinite(v) if shared is not None else np.isfinite(v) & np.isfinite(t)
    if not ok.any():
        z = np.zeros(len(a))
        return z, z.copy()
    if shared is not None and ok.all():
        return shared.integral(v), shared.covered
    h = Holds.of(t[ok], a, b)
    return h.integral(v[ok]), h.covered

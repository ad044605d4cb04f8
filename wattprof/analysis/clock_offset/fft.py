"""FFT cross-correlations: every lag at once, for the clock-offset estimators."""

from __future__ import annotations

import numpy as np


def fast_len(n: int) -> int:
    """Smallest 2^a * 3^b >= n (fast for numpy's pocketfft)."""
    best = 1 << max(0, (n - 1).bit_length())
    p3 = 1
    while p3 < best:
        p2 = p3
        while p2 < n:
            p2 *= 2
        best = min(best, p2)
        p3 *= 3
    return best


def cross_correlation(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``c[k] = sum_i u[i + lag] * v[i]`` for every lag from ``-(len(v) - 1)`` to ``len(u) - 1``
    (index ``k`` is lag ``k - (len(v) - 1)``), terms outside either array being 0."""
    nfft = fast_len(len(u) + len(v))
    r = np.fft.irfft(np.fft.rfft(u, nfft) * np.conj(np.fft.rfft(v, nfft)), nfft)
    return np.concatenate([r[-(len(v) - 1):], r[:len(u)]]) if len(v) > 1 else r[:len(u)]

"""The report's serving section: a serving engine's token counters (collector ``prometheus``)
against the energy of the report's boundary, overall and over time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..analysis.align import energy_over
from ..analysis.energy import EnergyCurve

WINDOWS = 10


def _tokens(t: np.ndarray, rate: np.ndarray, a: float, b: float) -> float:
    """Tokens in [a, b] from rates that each cover the interval since the previous scrape."""
    prev = np.concatenate([[np.nan], t[:-1]])
    lo, hi = np.maximum(prev, a), np.minimum(t, b)
    ok = ~np.isnan(rate) & ~np.isnan(prev) & (hi > lo)
    return float((rate[ok] * (hi[ok] - lo[ok])).sum())


def serving_sections(samples: pd.DataFrame, curves: list[EnergyCurve], devices: dict[str, dict]) -> list[dict[str, Any]]:
    if samples.empty or not curves:
        return []
    out = []
    for dev in sorted(d for d in samples[schema.DEVICE].unique() if schema.device_kind(str(d)) == "serve"):
        s = samples[samples[schema.DEVICE] == dev].sort_values(schema.T)
        if "output_tokens_per_s" not in s.columns and "prompt_tokens_per_s" not in s.columns:
            continue
        t = s[schema.T].to_numpy(float)
        if len(t) < 2:
            continue
        col = {c: s[c].to_numpy(float) if c in s.columns else np.full(len(t), np.nan)
               for c in ("prompt_tokens_per_s", "output_tokens_per_s")}
        a, b = float(t[0]), float(t[-1])
        edges = np.linspace(a, b, WINDOWS + 1)
        windows = []
        for w0, w1 in zip(edges[:-1], edges[1:], strict=True):
            e = float(energy_over(curves, w0, w1))
            tok = _tokens(t, col["output_tokens_per_s"], w0, w1)
            windows.append({"t_start": float(w0), "t_end": float(w1), "energy_j": e, "output_tokens": tok,
                            "j_per_output_token": e / tok if tok > 0 else None})
        e = float(energy_over(curves, a, b))
        pin = _tokens(t, col["prompt_tokens_per_s"], a, b)
        pout = _tokens(t, col["output_tokens_per_s"], a, b)
        info = devices.get(str(dev), {})
        out.append({"device": str(dev), "url": info.get("url"), "preset": info.get("preset"), "t_start": a, "t_end": b,
                    "energy_j": e, "prompt_tokens": pin, "output_tokens": pout,
                    "j_per_output_token": e / pout if pout > 0 else None,
                    "j_per_token": e / (pin + pout) if pin + pout > 0 else None, "windows": windows})
    return out

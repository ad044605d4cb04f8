"""Energy per token done right: per label over all tokens, and for inference a steady-state figure.

Steady state (the ML.ENERGY method, REFERENCE.md): with ``B`` the largest number of requests in
flight, the window opens when ``B`` requests have produced their first token (the batch is full)
and closes when all but ``B`` requests have finished (the drain begins). J/token in the window is
the window's energy over the output tokens generated inside it, each request's output tokens
spread evenly over its decode time (first token to end). Windows under ``MIN_STEADY_S`` = 20 s
are not reported (too short to be steady), and the reason is given instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

MIN_STEADY_S = 20.0


@dataclass
class SteadyState:
    t_start: float
    t_end: float
    duration_s: float
    batch: int
    energy_j: float
    output_tokens: float
    j_per_output_token: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def max_in_flight(t0: np.ndarray, t1: np.ndarray) -> int:
    """Largest number of overlapping intervals."""
    if len(t0) == 0:
        return 0
    times = np.concatenate([t0, t1])
    delta = np.concatenate([np.ones(len(t0)), -np.ones(len(t1))])
    order = np.lexsort((delta, times))  # ends before starts at equal times
    return int(np.cumsum(delta[order]).max())


def output_tokens_of(steps: pd.DataFrame) -> np.ndarray:
    col = "output_tokens" if "output_tokens" in steps.columns else "tokens"
    return pd.to_numeric(steps[col], errors="coerce").fillna(0.0).to_numpy(float)


def steady_state(steps: pd.DataFrame, energy_between) -> tuple[SteadyState | None, str | None]:
    """The steady-state window of one label's requests, or (None, why not).

    ``energy_between(t0, t1)`` gives the energy (J) of the report's boundary over a window."""
    if len(steps) < 2:
        return None, "fewer than 2 requests"
    t0 = steps["t_start"].to_numpy(float)
    t1 = steps["t_end"].to_numpy(float)
    tf = pd.to_numeric(steps["t_first_token"], errors="coerce").to_numpy(float) \
        if "t_first_token" in steps.columns else t0.copy()
    tf = np.where(np.isnan(tf), t0, tf)
    b = max_in_flight(t0, t1)
    n = len(steps)
    if b >= n:
        return None, f"all {n} requests were in flight at once: no steady state between ramp-up and drain"
    opens = float(np.sort(tf)[b - 1])
    closes = float(np.sort(t1)[n - b - 1])
    if closes - opens < MIN_STEADY_S:
        return None, (f"steady-state window {max(closes - opens, 0):.1f} s < {MIN_STEADY_S:.0f} s "
                      "(ML.ENERGY minimum): not reported")
    tok = output_tokens_of(steps)
    decode = np.maximum(t1 - tf, 1e-9)
    overlap = np.clip(np.minimum(t1, closes) - np.maximum(tf, opens), 0, None)
    tokens = float((tok * overlap / decode).sum())
    e = float(energy_between(opens, closes))
    return SteadyState(opens, closes, closes - opens, b, e, tokens, e / tokens if tokens > 0 else None), None


def is_inference(steps: pd.DataFrame) -> bool:
    """Requests (overlapping windows, or logged with prompt/output tokens) rather than steps."""
    if "output_tokens" in steps.columns and steps["output_tokens"].notna().any():
        return True
    # steps of different ranks/nodes of one job overlap by design: look for overlap within each writer
    keys = [c for c in ("node", "rank") if c in steps.columns and steps[c].notna().any()]
    groups = [g for _, g in steps.groupby(keys, dropna=False, sort=False)] if keys else [steps]
    return any(max_in_flight(g["t_start"].to_numpy(float), g["t_end"].to_numpy(float)) > 1 for g in groups)

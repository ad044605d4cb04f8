"""Energy of every step, one row each: what ``Run.step_energy()`` returns.

A step's energy is the energy of the report's boundary devices over the step's own span
``[t_start, t_end]`` (counter where there is one, else integrated power), so it is one call away
from a notebook. The host time *between* steps is not in any step's row (a label's total in the
report includes it). ``source`` says what the joules come from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .align import step_energy
from .energy import EnergyCurve

COLUMNS = ["step", "label", "rank", "t_start", "t_end", "duration_s", "tokens", "energy_j", "j_per_token",
           "mean_power_w", "source", "boundary"]


def step_table(curves: list[EnergyCurve], steps: pd.DataFrame, boundary: str) -> pd.DataFrame:
    """One row per step: ``energy_j`` (over the step's span, boundary devices summed), ``j_per_token``
    (``NaN`` without tokens), ``mean_power_w``, ``source`` (``counter``, ``instant_power``, ...,
    ``mixed``) and ``boundary`` (e.g. ``GPU only (1 device)``)."""
    if steps.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame({
        "step": steps["step"].to_numpy() if "step" in steps else np.arange(len(steps)),
        "label": steps["label"].to_numpy() if "label" in steps else "step",
        "rank": steps["rank"].to_numpy() if "rank" in steps else 0,
        "t_start": steps["t_start"].to_numpy(float), "t_end": steps["t_end"].to_numpy(float),
    })
    out["duration_s"] = out["t_end"] - out["t_start"]
    out["tokens"] = steps["tokens"].to_numpy(float) if "tokens" in steps else np.nan
    out["energy_j"] = step_energy(curves, steps) if curves else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        tok = out["tokens"].to_numpy(float)
        out["j_per_token"] = np.where(tok > 0, out["energy_j"].to_numpy(float) / tok, np.nan)
        dur = out["duration_s"].to_numpy(float)
        out["mean_power_w"] = np.where(dur > 0, out["energy_j"].to_numpy(float) / dur, np.nan)
    sources = sorted({c.source for c in curves})
    out["source"] = sources[0] if len(sources) == 1 else ("mixed" if sources else "none")
    out["boundary"] = boundary
    return out[COLUMNS].reset_index(drop=True)

"""Label segments: maximal runs of consecutive steps (in time order) that carry the same label.

The one home of the rule; a label's span (its energy, its bottleneck windows, the shaded bands of
the report's timeline) is made of its segments, which include the gaps between their steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["label", "t_start", "t_end", "steps"]


def label_segments(steps: pd.DataFrame) -> pd.DataFrame:
    """One row per segment, in time order: ``label`` (str), ``t_start`` (the first step's start),
    ``t_end`` (the latest end among its steps) and ``steps`` (how many). Steps are ordered by
    ``t_start`` then ``t_end`` (stable: equal times keep their order); labels compare as text."""
    if steps is None or len(steps) == 0:
        return pd.DataFrame({"label": pd.Series(dtype=object), "t_start": pd.Series(dtype="float64"),
                             "t_end": pd.Series(dtype="float64"), "steps": pd.Series(dtype="int64")})
    s = steps[["t_start", "t_end", "label"]].sort_values(["t_start", "t_end"], kind="stable")
    labels = s["label"].astype(str).to_numpy()
    seg = np.concatenate([[0], np.cumsum(labels[1:] != labels[:-1])])
    g = s.assign(label=labels).groupby(seg, sort=True)
    return pd.DataFrame({
        "label": g["label"].first().to_numpy(),
        "t_start": g["t_start"].min().to_numpy(dtype="float64"),
        "t_end": g["t_end"].max().to_numpy(dtype="float64"),
        "steps": g.size().to_numpy(dtype="int64"),
    })

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
    t0 = steps["t_start"].to_numpy(dtype="float64")
    t1 = steps["t_end"].to_numpy(dtype="float64")
    order = np.lexsort((t1, t0))  # stable, by start then end; NaN last, as pandas sorts
    t0, t1 = t0[order], t1[order]
    col = steps["label"]
    if pd.api.types.is_string_dtype(col.dtype) and not col.hasnans:  # text already: compare codes
        codes, names = pd.factorize(col)
        codes = codes[order]
        first = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        label = np.asarray(names, dtype=object)[codes[first]]
    else:
        labels = col.astype(str).to_numpy()[order]
        first = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1]]))
        label = labels[first].astype(object)
    with np.errstate(invalid="ignore"):
        return pd.DataFrame({
            "label": label,
            "t_start": np.fmin.reduceat(t0, first),  # the first, unless NaN: min and max skip NaN
            "t_end": np.fmax.reduceat(t1, first),
            "steps": np.diff(np.append(first, len(t0))).astype("int64"),
        })

"""Samples x steps -> energy per step, per label and idle, vectorised.

Definitions (documented for users in docs/report-json.md):

- A step's energy is the energy of all the run's devices (of the chosen boundary) between its
  ``t_start`` and ``t_end``.
- A label's *span* is made of segments: maximal runs of consecutive steps (in time order) that
  carry that label. A label's energy is the energy over its segments, i.e. its steps **and the
  host time between consecutive steps** (data loading, stalls are part of those steps' cost).
  It is split into ``in_step`` (union of the step intervals) and ``between_steps`` (the rest).
- *Idle* is the energy over the samples' time range that no label's span covers.
- **Overlapping labels** (steps of two labels running at once, e.g. two threads): the energy of
  time covered by the spans of ``k`` labels is **split equally** between them (each gets 1/k), so
  the labels and idle add up to the total and nothing is counted twice; the report says so in a
  flag naming the labels and the overlapping time (:func:`split_overlapping_labels`).

Everything is computed with cumulative curves and ``np.interp``: no loop scans samples per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .energy import EnergyCurve
from .segments import label_segments


def merge_intervals(t0: np.ndarray, t1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals ``[t0_i, t1_i]`` as sorted, disjoint intervals."""
    if len(t0) == 0:
        return t0, t1
    order = np.argsort(t0, kind="stable")
    s, e = t0[order], t1[order]
    run_end = np.maximum.accumulate(e)
    # a new merged interval starts where a start lies beyond every earlier end
    new = np.concatenate([[True], s[1:] > run_end[:-1]])
    idx = np.flatnonzero(new)
    starts = s[idx]
    ends = np.maximum.reduceat(e, idx)
    return starts, ends


def energy_over(curves: list[EnergyCurve], t0: np.ndarray | float, t1: np.ndarray | float) -> np.ndarray:
    """Sum over devices of the energy in each window."""
    total = np.zeros(np.broadcast(np.asarray(t0), np.asarray(t1)).shape, dtype=float)
    for c in curves:
        total = total + c.between(t0, t1)
    return total


def step_energy(curves: list[EnergyCurve], steps: pd.DataFrame) -> np.ndarray:
    """Energy (J) of every step, all devices summed."""
    return energy_over(curves, steps["t_start"].to_numpy(float), steps["t_end"].to_numpy(float))


@dataclass
class LabelEnergy:
    label: str
    energy_j: float
    in_step_energy_j: float
    between_steps_energy_j: float
    duration_s: float
    in_step_duration_s: float
    tokens: float | None
    steps: int
    #: segments of this label (for plots and bottleneck windows)
    segments: pd.DataFrame

    @property
    def j_per_token(self) -> float | None:
        return self.energy_j / self.tokens if self.tokens else None


@dataclass
class Alignment:
    """The result of aligning one run's steps with its energy curves."""

    t_first: float
    t_last: float
    total_energy_j: float
    labels: dict[str, LabelEnergy]
    idle_energy_j: float
    idle_duration_s: float
    step_energy_j: np.ndarray
    steps_outside: int
    #: labels whose spans overlap in time, and how their energy was shared (one line each)
    overlap_notes: list[str] = field(default_factory=list)


def align(curves: list[EnergyCurve], steps: pd.DataFrame) -> Alignment:
    curves = [c for c in curves if len(c.t) >= 2]
    if not curves:
        t_first = t_last = float("nan")
        total = 0.0
    else:
        t_first = min(c.t_first for c in curves)
        t_last = max(c.t_last for c in curves)
        total = float(sum(c.total_j for c in curves))
    labels: dict[str, LabelEnergy] = {}
    if steps.empty or not curves:
        return Alignment(t_first, t_last, total, labels, total, max(t_last - t_first, 0.0) if curves else 0.0,
                         np.zeros(len(steps)), 0)
    per_step = step_energy(curves, steps)
    segs = label_segments(steps)
    outside = int(((steps["t_end"] < t_first) | (steps["t_start"] > t_last)).sum())
    for label, sl in steps.groupby("label", sort=False):
        lsegs = segs[segs["label"] == label]
        s0, s1 = merge_intervals(lsegs["t_start"].to_numpy(float), lsegs["t_end"].to_numpy(float))
        i0, i1 = merge_intervals(sl["t_start"].to_numpy(float), sl["t_end"].to_numpy(float))
        e_span = float(energy_over(curves, s0, s1).sum())
        e_in = float(energy_over(curves, i0, i1).sum())
        tok = sl["tokens"]
        labels[str(label)] = LabelEnergy(
            label=str(label), energy_j=e_span, in_step_energy_j=e_in, between_steps_energy_j=e_span - e_in,
            duration_s=float((s1 - s0).sum()), in_step_duration_s=float((i1 - i0).sum()),
            tokens=float(tok.sum()) if tok.notna().any() else None, steps=len(sl), segments=lsegs,
        )
    a0, a1 = merge_intervals(segs["t_start"].to_numpy(float), segs["t_end"].to_numpy(float))
    notes = split_overlapping_labels(curves, steps, segs, labels, union_s=float((a1 - a0).sum()))
    c0, c1 = np.clip(a0, t_first, t_last), np.clip(a1, t_first, t_last)
    covered_j = float(energy_over(curves, c0, c1).sum())
    covered_s = float((c1 - c0).sum())
    return Alignment(t_first, t_last, total, labels, total - covered_j, (t_last - t_first) - covered_s,
                     per_step, outside, notes)


def _covered(t: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """For each time ``t``: does it lie inside one of the sorted, disjoint intervals ``[s0, s1]``?"""
    i = np.searchsorted(s0, t, side="right") - 1
    ok = i >= 0
    out = np.zeros(len(t), dtype=bool)
    out[ok] = t[ok] < s1[i[ok]]
    return out


def split_overlapping_labels(curves: list[EnergyCurve], steps: pd.DataFrame, segs: pd.DataFrame,
                             labels: dict[str, LabelEnergy], *, union_s: float) -> list[str]:
    """When the spans of different labels overlap in time, share the energy of each overlapping
    stretch equally between the labels covering it (in place on ``labels``: ``energy_j``,
    ``in_step_energy_j``, ``between_steps_energy_j``), so that labels plus idle add up to the
    total. Returns one note per pair of overlapping labels (none when nothing overlaps: then
    ``labels`` is untouched)."""
    if sum(le.duration_s for le in labels.values()) <= union_s * (1 + 1e-12) + 1e-9:
        return []
    spans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    insteps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, sl in steps.groupby("label", sort=False):
        lsegs = segs[segs["label"] == label]
        spans[str(label)] = merge_intervals(lsegs["t_start"].to_numpy(float), lsegs["t_end"].to_numpy(float))
        insteps[str(label)] = merge_intervals(sl["t_start"].to_numpy(float), sl["t_end"].to_numpy(float))
    cuts = np.unique(np.concatenate([a for pair in (*spans.values(), *insteps.values()) for a in pair]))
    if len(cuts) < 2:
        return []
    lo, hi = cuts[:-1], cuts[1:]
    mid = (lo + hi) / 2
    span_cover = {k: _covered(mid, *v) for k, v in spans.items()}
    k = np.sum(list(span_cover.values()), axis=0)
    share = np.where(k > 0, 1.0 / np.maximum(k, 1), 0.0) * energy_over(curves, lo, hi)
    for label, le in labels.items():
        e_span = float(share[span_cover[label]].sum())
        e_in = float(share[_covered(mid, *insteps[label]) & span_cover[label]].sum())
        le.energy_j, le.in_step_energy_j, le.between_steps_energy_j = e_span, e_in, e_span - e_in
    notes = []
    names = list(span_cover)
    width = hi - lo
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = float(width[span_cover[a] & span_cover[b]].sum())
            if both > 0:
                notes.append(f"labels {a!r} and {b!r} overlap for {both:.3g} s (steps running at once): the energy "
                             "of that time is split equally between them, so label energies add up to the total; "
                             "their J/token and mean power cover their share only")
    return notes

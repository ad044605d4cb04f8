"""The report's figures that come from the second pass over the samples
(:func:`wattprof.reports.sample_digest.evidence_pass`): what that pass computes for a report
(:func:`evidence_request`), the idle time inside the unlabelled time, the bottleneck verdicts and
the plausibility of each label's mean power. Used by :mod:`wattprof.reports.build` only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import schema
from ..analysis import align as align_mod
from ..analysis import energy as energy_mod
from ..power_columns import MEASURED_POWER
from . import sample_digest as digest
from .model import (
    BottleneckVerdict,
    DeviceReport,
    IdleReport,
    LabelReport,
    Segment,
    UnlabelledReport,
    WindowVerdict,
)
from .sample_digest import DeviceFrames

#: A window's mean power may sit this far outside its readings' range (calibration of averaged vs
#: instant readings, edges) before it is implausible.
PLAUSIBLE_MARGIN = 0.03


def plausibility_flags(by_label: dict[str, LabelReport], a: align_mod.Alignment,
                        ev: digest.Evidence) -> list[str]:
    """A mean power outside every power reading in its window is not physical: flag it."""
    out = []
    for label, lr in by_label.items():
        if lr.mean_power_w is None or lr.energy_j is None or a.labels.get(label) is None:
            continue
        if label not in ev.power_range:
            continue
        lo, hi = ev.power_range[label]
        if lr.mean_power_w < (1 - PLAUSIBLE_MARGIN) * lo or lr.mean_power_w > (1 + PLAUSIBLE_MARGIN) * hi:
            out.append(f"label {lr.label}: mean power {lr.mean_power_w:.1f} W lies outside every power reading in "
                       f"its time ({lo:.1f}-{hi:.1f} W): its energy is not plausible (edges, gaps or a faulty source)")
    return out


IDLE_RULE = ("every accelerator within 1.3 x its idle power floor with utilisation <= 10 % and no SM activity, "
             "inside the unlabelled time")


def unlabelled_and_idle(curves: list[energy_mod.EnergyCurve], a: align_mod.Alignment,
                        ev: digest.Evidence) -> tuple[UnlabelledReport, IdleReport]:
    """Unlabelled time (outside every label's span) and, inside it, the time the accelerators idled
    (asked of the evidence pass for the unlabelled time when the run has accelerators:
    ``EvidenceRequest.idle_within``)."""
    from ..analysis import idle as idle_mod

    def mean(e: float, d: float) -> float | None:
        return e / d if d > 0 else None

    idle_j = idle_s = 0.0
    floors: dict[str, float] = {}
    if curves and ev.idle_within is not None:
        u0, u1 = ev.idle_within
        (i0, i1), floors = ev.idle, ev.idle_floors
        i0, i1 = idle_mod.intersect(u0, u1, i0, i1)
        idle_j = float(align_mod.energy_over(curves, i0, i1).sum()) if len(i0) else 0.0
        idle_s = float((i1 - i0).sum())
    un = UnlabelledReport(energy_j=a.idle_energy_j, duration_s=a.idle_duration_s,
                          mean_power_w=mean(a.idle_energy_j, a.idle_duration_s), idle_energy_j=idle_j,
                          idle_duration_s=idle_s)
    idle = IdleReport(energy_j=idle_j, duration_s=idle_s, mean_power_w=mean(idle_j, idle_s),
                      idle_power_floor_w={k: round(v, 2) for k, v in floors.items() if math.isfinite(v)},
                      rule=IDLE_RULE)
    return un, idle


def unlabelled_time(segments: list[Segment], a: align_mod.Alignment) -> tuple[np.ndarray, np.ndarray]:
    """The windows of the run's time range outside every label's segments (sorted, disjoint)."""
    from ..analysis import idle as idle_mod

    s0, s1 = align_mod.merge_intervals(np.array([s.t_start for s in segments], dtype=float),
                                       np.array([s.t_end for s in segments], dtype=float))
    return idle_mod.unlabelled_windows(a.t_first, a.t_last, s0, s1)


def evidence_request(figures: dict[str, digest.DeviceFigures], frames: DeviceFrames,
                      devices: dict[str, dict], chosen: list[DeviceReport], a: align_mod.Alignment,
                      segments: list[Segment], bottlenecks: bool) -> digest.EvidenceRequest:
    """What the second pass over the samples computes: bottleneck evidence of the labels, the
    unlabelled time and the timeline (GPUs); idle intervals (accelerators); power ranges per label."""
    from ..analysis import bottleneck

    limits = {d: float(i["power_limit_w"]) for d, i in devices.items() if i.get("power_limit_w")}
    req = digest.EvidenceRequest(power_limits=limits,
                                 power_columns={d: f.power_columns for d, f in figures.items()})
    accel = [d.device for d in chosen if d.kind != "host"]
    unlabelled = unlabelled_time(segments, a) if math.isfinite(a.t_first) else None
    if accel and unlabelled is not None:
        req.idle_devices = accel
        req.idle_within = unlabelled  # the only idle time the report uses
        req.idle_power_w = {d: float(i["idle_power_w"]) for d, i in devices.items() if i.get("idle_power_w")}
    req.range_devices = [d.device for d in chosen]
    req.range_column = next((c for c in MEASURED_POWER if any(c in f.power_columns
                                                                         for f in figures.values())), None)
    req.label_spans = digest.label_spans(a.labels)
    gpus = [d for d in figures if schema.device_kind(d) == "gpu"]
    if not bottlenecks or not gpus or "util_pct" not in frames.columns:
        return req
    req.gpus = gpus
    if segments:
        windows = pd.DataFrame([{"label": s.label, "t_start": s.t_start, "t_end": s.t_end} for s in segments])
        codes, labels, w0, w1 = bottleneck.label_groups(windows)
        req.windows["labels"] = digest.WindowSet(w0, w1, codes, len(labels))
    if unlabelled is not None and len(unlabelled[0]):  # the gaps of the run no label's span covers
        u0, u1 = unlabelled
        req.windows["unlabelled"] = digest.WindowSet(u0, u1, np.zeros(len(u0), int), 1)
    window = max(5.0, (a.t_last - a.t_first) / 60.0) if math.isfinite(a.t_last - a.t_first) else 5.0
    t0, t1 = bottleneck.timeline_windows(min(figures[d].t_min for d in gpus), max(figures[d].t_max for d in gpus),
                                         window)
    if len(t0):
        req.windows["timeline"] = digest.WindowSet(t0, t1, np.arange(len(t0)), len(t0))
    return req


def bottleneck_verdicts(ev: digest.Evidence, steps: pd.DataFrame, segments: list[Segment],
                        by_label: dict[str, LabelReport], idle: UnlabelledReport) -> list[WindowVerdict]:
    """Fill each label's (and the unlabelled time's) verdict; return the verdicts of the run's time windows."""
    from ..analysis import bottleneck

    if "labels" in ev.windows:
        labels = list(dict.fromkeys(s.label for s in segments))
        gaps = bottleneck.gap_fractions(steps)
        found = bottleneck.verdicts(ev.windows["labels"], [gaps.get(label) for label in labels])
        for label, v in zip(labels, found, strict=True):
            if v is not None and label in by_label:
                by_label[label].bottleneck = BottleneckVerdict.of(v)
    if "unlabelled" in ev.windows:
        (v,) = bottleneck.verdicts(ev.windows["unlabelled"])
        idle.bottleneck = BottleneckVerdict.of(v) if v is not None else None
    w = ev.windows.get("timeline", [])
    edges = ev.sets.get("timeline")
    if edges is None:
        return []
    return [WindowVerdict.of(edges.a[i], edges.b[i], v) for i, v in enumerate(bottleneck.verdicts(w)) if v is not None]

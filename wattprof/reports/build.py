"""Compute the :class:`~wattprof.reports.model.Report` of a run, once. Renderers never compute."""

from __future__ import annotations

import math

import pandas as pd

from .. import schema
from ..analysis import align as align_mod
from ..analysis import energy as energy_mod
from ..run import Run
from .model import DeviceReport, IdleReport, LabelReport, Report


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def build_report(run: Run) -> Report:
    samples = run.samples
    steps = run.steps
    meta = run.meta
    curves = energy_mod.curves(samples)
    devices: list[DeviceReport] = []
    for dev, c in curves.items():
        info = run.devices.get(dev, {})
        mean_w, max_w = energy_mod.mean_power(samples, dev)
        devices.append(DeviceReport(
            device=dev, name=info.get("name"), kind=schema.device_kind(dev), energy_j=c.total_j,
            energy_source=c.source, energy_source_description=schema.SOURCE_DESCRIPTION[c.source],
            estimated=c.source == "estimate", power_source=info.get("power_source"),
            mean_power_w=_num(mean_w), max_power_w=_num(max_w), power_limit_w=_num(info.get("power_limit_w")),
            t_first=_num(c.t_first) if len(c.t) else None, t_last=_num(c.t_last) if len(c.t) else None,
            notes=list(c.notes),
        ))
    flags: list[str] = []
    # The totals' boundary: measured accelerators; the host is reported on its own; estimates are
    # never summed with measurements.
    accel = [d for d in devices if d.kind != "host" and d.energy_source != "none"]
    measured = [d for d in accel if not d.estimated]
    chosen = measured or accel
    if measured and len(measured) < len(accel):
        flags.append("some accelerators have only estimated power: they are reported per device, not in the totals")
    if not chosen:
        chosen = [d for d in devices if d.kind == "host" and d.energy_source != "none"]
    kinds = sorted({d.kind.upper() if d.kind != "host" else "host" for d in chosen})
    boundary = (f"{'+'.join(kinds) or 'no device'} only ({len(chosen)} device{'s' if len(chosen) != 1 else ''})"
                if chosen else "no device with power data")
    estimated = bool(chosen) and all(d.estimated for d in chosen)
    sources = sorted({d.energy_source for d in chosen})
    used_curves = [curves[d.device] for d in chosen]

    a = align_mod.align(used_curves, steps)
    duration = (a.t_last - a.t_first) if used_curves else 0.0
    by_label: dict[str, LabelReport] = {}
    for label, le in a.labels.items():
        mean_step = le.in_step_duration_s / le.steps if le.steps else None
        by_label[label] = LabelReport(
            label=label, energy_j=le.energy_j, in_step_energy_j=le.in_step_energy_j,
            between_steps_energy_j=le.between_steps_energy_j, duration_s=le.duration_s,
            in_step_duration_s=le.in_step_duration_s, tokens=le.tokens, j_per_token=le.j_per_token,
            steps=le.steps, mean_step_s=mean_step,
            mean_power_w=le.energy_j / le.duration_s if le.duration_s > 0 else None,
        )
    tokens = float(steps["tokens"].sum()) if len(steps) and steps["tokens"].notna().any() else None
    labelled_tokens_energy = sum(lr.energy_j for lr in by_label.values() if lr.tokens)
    j_per_token = labelled_tokens_energy / tokens if tokens else None
    idle = IdleReport(energy_j=a.idle_energy_j, duration_s=a.idle_duration_s,
                      mean_power_w=a.idle_energy_j / a.idle_duration_s if a.idle_duration_s > 0 else None)
    if a.steps_outside:
        flags.append(f"{a.steps_outside} step(s) lie outside the samples' time range (clock skew?): "
                     "their energy is 0")
    if run.status == "unfinished":
        flags.append("run never finished (still recording, or the recorder was killed): data up to the last flush")
    host = next((d for d in devices if d.kind == "host"), None)
    if host is not None and host in chosen:
        host = None
    return Report(
        run={"id": meta.get("id"), "name": run.name, "path": str(run.path), "status": run.status,
             "tags": meta.get("tags", {}), "command": meta.get("command"), "started_at": meta.get("started_at"),
             "ended_at": meta.get("ended_at"), "exit_code": meta.get("exit_code")},
        boundary=boundary, energy_j=float(sum(d.energy_j for d in chosen)), energy_source="+".join(sources) or "none",
        estimated=estimated, duration_s=float(duration) if not pd.isna(duration) else 0.0,
        tokens=tokens, j_per_token=j_per_token, steps=len(steps), devices=devices, by_label=by_label, idle=idle,
        host=host, flags=flags, warnings=list(run.warnings), events=len(run.events),
    )

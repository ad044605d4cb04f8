"""Compute the :class:`~wattprof.reports.model.Report` of a run, once. Renderers never compute."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import schema
from ..analysis import align as align_mod
from ..analysis import energy as energy_mod
from ..analysis import quality, tokens
from ..run import Run
from .model import (
    CarbonReport,
    DeviceReport,
    IdleReport,
    LabelReport,
    NodeReport,
    Report,
    Segment,
    Series,
    WastedEnergy,
)

if TYPE_CHECKING:
    from ..analysis.carbon import CarbonContext

NO_LOCATION = ("no location known: CO2 not computed (pass --region aws:REGION, --country ISO3[/REGION] "
               "or --intensity G_PER_KWH)")


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def build_report(run: Run, *, carbon: CarbonContext | None = None, carbon_note: str | None = None,
                 bottlenecks: bool = True, timeline_points: int = 1500) -> Report:
    """The report of ``run``: energy by device, label and token; bottlenecks; CO2 when ``carbon``
    (from :func:`wattprof.analysis.carbon.resolve_intensity`) is given."""
    samples = run.samples
    steps = run.steps
    meta = run.meta
    curves = energy_mod.curves(samples)
    devices: list[DeviceReport] = []
    for dev, c in curves.items():
        if schema.device_kind(dev) == "serve":  # token counters of a server (reports/serving.py), no power
            continue
        info = run.devices.get(dev, {})
        mean_w, max_w = energy_mod.mean_power(samples, dev)
        notes = list(c.notes)
        for flag in (quality.source_flag(c.source), quality.gap_flag(dev, quality.device_times(samples, dev))):
            if flag:
                notes.append(flag)
        devices.append(DeviceReport(
            device=dev, name=info.get("name"), kind=schema.device_kind(dev), energy_j=c.total_j,
            energy_source=c.source, energy_source_description=schema.SOURCE_DESCRIPTION[c.source],
            estimated=c.source == "estimate", power_source=info.get("power_source"),
            mean_power_w=_num(mean_w), max_power_w=_num(max_w), power_limit_w=_num(info.get("power_limit_w")),
            t_first=_num(c.t_first) if len(c.t) else None, t_last=_num(c.t_last) if len(c.t) else None,
            notes=notes, self_check=_self_check(samples, dev, c),
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
    boundary_source = sources[0] if len(sources) == 1 else "mixed"
    for label, le in a.labels.items():
        mean_step = le.in_step_duration_s / le.steps if le.steps else None
        lr = LabelReport(
            label=label, energy_j=le.energy_j, in_step_energy_j=le.in_step_energy_j,
            between_steps_energy_j=le.between_steps_energy_j, duration_s=le.duration_s,
            in_step_duration_s=le.in_step_duration_s, tokens=le.tokens, j_per_token=le.j_per_token,
            steps=le.steps, mean_step_s=mean_step,
            mean_power_w=le.energy_j / le.duration_s if le.duration_s > 0 else None,
        )
        _inference(lr, steps[steps["label"] == label], used_curves)
        sl = steps[steps["label"] == label]
        flag = quality.short_window_flag((sl["t_end"] - sl["t_start"]).to_numpy(float), "steps", boundary_source)
        if flag:
            lr.flags.append(flag)
        if le.duration_s < quality.COUNTER_RESOLUTION_S and boundary_source == "counter":
            lr.flags.append(f"the label spans only {le.duration_s * 1e3:.0f} ms: under the counter's ~1 s "
                            "resolution, its energy is uncertain by about 2 x power x 100 ms")
        by_label[label] = lr
    tokens = float(steps["tokens"].sum()) if len(steps) and steps["tokens"].notna().any() else None
    labelled_tokens_energy = sum(lr.energy_j for lr in by_label.values() if lr.tokens)
    j_per_token = labelled_tokens_energy / tokens if tokens else None
    idle = IdleReport(energy_j=a.idle_energy_j, duration_s=a.idle_duration_s,
                      mean_power_w=a.idle_energy_j / a.idle_duration_s if a.idle_duration_s > 0 else None)
    flags += quality.clock_skew_flags(steps, a.t_first, a.t_last)
    flags += list((meta.get("merge") or {}).get("flags") or [])
    nodes = _nodes(meta, devices, chosen)
    for key, src in (meta.get("sources") or {}).items():
        flags += [f"{key}: {c}" for c in src.get("caveats") or []]
    if run.status == "unfinished":
        flags.append("run never finished (still recording, or the recorder was killed): data up to the last flush")
    flags += _event_flags(run.events)
    flags += [f"storage: {e}" for e in meta.get("errors") or []]
    host = next((d for d in devices if d.kind == "host"), None)
    if host is not None and host in chosen:
        host = None
    segments = [Segment(str(r.label), float(r.t_start), float(r.t_end))
                for r in align_mod.label_segments(steps).itertuples(index=False)]
    bt: list[dict] = []
    wasted = None
    if bottlenecks:
        bt = _bottlenecks(samples, steps, run.devices, segments, by_label, idle, a.t_first, a.t_last)
        host_bound = sum(lr.energy_j for lr in by_label.values()
                         if (lr.bottleneck or {}).get("verdict") == "host-bound")
        total_w = idle.energy_j + host_bound
        energy = float(sum(d.energy_j for d in chosen))
        wasted = WastedEnergy(idle_j=idle.energy_j, host_bound_j=host_bound, total_j=total_w,
                              share=total_w / energy if energy > 0 else 0.0)
    from .agents import agent_sections

    agent_tasks, by_model, agents = agent_sections(steps, used_curves, meta, carbon, run.events)
    from .serving import serving_sections

    serving = serving_sections(samples, used_curves, run.devices)
    carbon_report = _carbon(carbon, float(sum(d.energy_j for d in chosen)), by_label, j_per_token, tokens) \
        if carbon is not None else None
    return Report(
        run={"id": meta.get("id"), "name": run.name, "path": str(run.path), "status": run.status,
             "tags": meta.get("tags", {}), "command": meta.get("command"), "started_at": meta.get("started_at"),
             "ended_at": meta.get("ended_at"), "exit_code": meta.get("exit_code")},
        boundary=boundary, energy_j=float(sum(d.energy_j for d in chosen)), energy_source="+".join(sources) or "none",
        estimated=estimated, duration_s=float(duration) if not pd.isna(duration) else 0.0,
        tokens=tokens, j_per_token=j_per_token, steps=len(steps), devices=devices, by_label=by_label, idle=idle,
        host=host, flags=flags, warnings=list(run.warnings), events=len(run.events),
        wasted=wasted, carbon=carbon_report, carbon_note=None if carbon is not None else (carbon_note or NO_LOCATION),
        timeline=[_series(samples, d, timeline_points) for d in devices if d.kind != "host"],
        segments=segments, bottleneck_timeline=bt, nodes=nodes, tasks=agent_tasks, by_model=by_model,
        agents=agents, serving=serving,
    )


def _nodes(meta: dict, devices: list[DeviceReport], chosen: list[DeviceReport]) -> dict[str, NodeReport]:
    """Per-node subtotals of a merged run (meta["nodes"], devices named ``<node>/<device>``)."""
    out: dict[str, NodeReport] = {}
    in_total = {d.device for d in chosen}
    for node, info in (meta.get("nodes") or {}).items():
        mine = [d for d in devices if d.device.startswith(f"{node}/")]
        off = info.get("clock_offset") or {}
        out[node] = NodeReport(
            node=node, hostname=info.get("hostname"),
            energy_j=float(sum(d.energy_j for d in mine if d.device in in_total)), devices=[d.device for d in mine],
            clock_offset_s=_num(off.get("offset_s")), clock_offset_method=off.get("method"),
            clock_corrected=bool(off.get("corrected")))
    return out


def _self_check(samples: pd.DataFrame, device: str, c: energy_mod.EnergyCurve) -> dict[str, float] | None:
    """Counter vs integrated instant power over the whole run, for devices that have both."""
    if c.source != "counter" or "power_w" not in samples.columns:
        return None
    dev = samples[samples[schema.DEVICE] == device]
    if dev["power_w"].notna().sum() < 2:
        return None
    inst = energy_mod.device_curve(dev, device, "instant_power")
    t0, t1 = max(c.t_first, inst.t_first), min(c.t_last, inst.t_last)
    if not t1 > t0:
        return None
    e_c, e_i = float(c.between(t0, t1)), float(inst.between(t0, t1))
    return {"counter_j": e_c, "instant_power_j": e_i,
            "difference_pct": 100 * (e_i / e_c - 1) if e_c > 0 else float("nan")}


def _inference(lr: LabelReport, sl: pd.DataFrame, curves: list[energy_mod.EnergyCurve]) -> None:
    """Per output token, per request and steady state for labels that are inference requests."""
    if sl.empty or not tokens.is_inference(sl):
        return
    if "call" in sl.columns and (sl["call"] == "tool").all():  # an agent's tool calls are not requests
        return
    if "prompt_tokens" in sl.columns and sl["prompt_tokens"].notna().any():
        lr.prompt_tokens = float(pd.to_numeric(sl["prompt_tokens"], errors="coerce").sum())
    lr.output_tokens = float(tokens.output_tokens_of(sl).sum())
    lr.j_per_output_token = lr.energy_j / lr.output_tokens if lr.output_tokens else None
    lr.j_per_request = lr.energy_j / len(sl)
    ss, why = tokens.steady_state(sl, lambda t0, t1: float(align_mod.energy_over(curves, t0, t1)))
    lr.steady_state = ss.to_dict() if ss else None
    lr.steady_state_note = why


def _gpu_samples(samples: pd.DataFrame) -> pd.DataFrame:
    if samples.empty:
        return samples
    # device_kind once per device, not per sample (6.9 M calls took 3-8 s on a 24 h run)
    gpus = [d for d in samples[schema.DEVICE].unique() if schema.device_kind(str(d)) == "gpu"]
    return samples[samples[schema.DEVICE].isin(gpus)]


#: Recorder events that make figures of the report suspect: kind -> what the flag says.
EVENT_FLAGS = {
    "clock_jump": "the wall clock jumped during the run",
    "device_lost": "a device was lost during the run",
    "collector_timeout": "a collector's reads were slow or stuck",
    "storage_error": "the disk refused samples during the run",
}


def _event_flags(events: pd.DataFrame) -> list[str]:
    """One flag per kind of :data:`EVENT_FLAGS` present: what happened, how often, the first message."""
    if events.empty or "kind" not in events.columns:
        return []
    out = []
    for kind, what in EVENT_FLAGS.items():
        ev = events[events["kind"] == kind]
        if ev.empty:
            continue
        more = f" (+{len(ev) - 1} more, see events-*.jsonl)" if len(ev) > 1 else ""
        out.append(f"{what}: {ev['message'].iloc[0]}{more}")
    return out


def _bottlenecks(samples: pd.DataFrame, steps: pd.DataFrame, devices: dict[str, dict], segments: list[Segment],
                 by_label: dict[str, LabelReport], idle: IdleReport, t_first: float, t_last: float) -> list[dict]:
    """Fill each label's (and idle's) verdict; return the verdicts of the run's time windows."""
    from ..analysis import bottleneck

    gpu = _gpu_samples(samples)
    if gpu.empty or "util_pct" not in gpu.columns:
        return []
    limits = {d: float(i["power_limit_w"]) for d, i in devices.items() if i.get("power_limit_w")}
    if segments:
        windows = pd.DataFrame([{"label": s.label, "t_start": s.t_start, "t_end": s.t_end} for s in segments])
        for label, v in bottleneck.classify_windows(gpu, windows, limits, steps).items():
            if label in by_label:
                by_label[label].bottleneck = v.to_dict()
    # idle: the gaps of the run that no label's span covers
    s0, s1 = align_mod.merge_intervals(np.array([s.t_start for s in segments]), np.array([s.t_end for s in segments]))
    edges = np.concatenate([[t_first], np.ravel(np.column_stack([s0, s1])), [t_last]])
    g0, g1 = np.clip(edges[0::2], t_first, t_last), np.clip(edges[1::2], t_first, t_last)
    keep = g1 - g0 > 0
    if keep.any():
        w = pd.DataFrame({"label": "idle", "t_start": g0[keep], "t_end": g1[keep]})
        v = bottleneck.classify_windows(gpu, w, limits).get("idle")
        idle.bottleneck = v.to_dict() if v is not None else None
    window = max(5.0, (t_last - t_first) / 60.0) if math.isfinite(t_last - t_first) else 5.0
    return [{"t_start": a, "t_end": b, "verdict": v.verdict, "modifiers": list(v.modifiers)}
            for a, b, v in bottleneck.classify_timeline(gpu, limits, window_s=window)]


def _carbon(ctx: CarbonContext, energy_j: float, by_label: dict[str, LabelReport], j_per_token: float | None,
            tokens: float | None) -> CarbonReport:
    from ..analysis import carbon as c

    total = c.carbon_for(energy_j, ctx)
    per_mtok = None
    if j_per_token is not None and tokens:
        per_mtok = c.co2_g(j_per_token * 1e6, ctx)
    return CarbonReport(
        basis=ctx.intensity.basis, location=ctx.intensity.location, intensity_g_per_kwh=ctx.intensity.g_per_kwh,
        intensity_source=ctx.intensity.source, intensity_year=ctx.intensity.year, pue=ctx.pue,
        pue_source=ctx.pue_source, energy_kwh=total.energy_kwh, facility_kwh=total.facility_kwh,
        g_co2e=total.g_co2e, g_co2e_per_million_tokens=per_mtok,
        by_label_g_co2e={k: c.co2_g(v.energy_j, ctx) for k, v in by_label.items()},
        car_km=total.car_km, car_miles=total.car_miles,
    )


def _series(samples: pd.DataFrame, device: DeviceReport, points: int) -> Series:
    dev = samples[samples[schema.DEVICE] == device.device]
    col = next((c for c in ("power_w", "power_avg_w", "power_est_w") if c in dev.columns and dev[c].notna().any()),
               None)
    if col is None:
        return Series(device.device, [], [], "none", device.power_limit_w)
    d = dev[[schema.T, col]].dropna()
    t = d[schema.T].to_numpy(float)
    v = d[col].to_numpy(float)
    if len(t) > points:  # mean per time bin: keeps energy-relevant shape, bounded size
        span = t[-1] - t[0]
        b = np.minimum(((t - t[0]) / span * points).astype(int), points - 1)
        n = np.bincount(b, minlength=points)
        ok = n > 0
        t = (np.bincount(b, weights=t, minlength=points)[ok] / n[ok])
        v = (np.bincount(b, weights=v, minlength=points)[ok] / n[ok])
    return Series(device.device, [round(float(x), 3) for x in t], [round(float(x), 2) for x in v], col,
                  device.power_limit_w)

"""Compute the :class:`~wattprof.reports.model.Report` of a run, once. Renderers never compute."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import schema
from ..analysis import align as align_mod
from ..analysis import energy as energy_mod
from ..analysis import quality, tokens
from ..run.scan import BATCH_ROWS, NotScannable, SampleScan
from . import evidence
from . import sample_digest as digest
from .evidence import IDLE_RULE, PLAUSIBLE_MARGIN  # noqa: F401 - the report's rules, as before
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
    WindowVerdict,
)
from .sample_digest import DeviceFrames, WholeSamples

if TYPE_CHECKING:
    from ..analysis.carbon import CarbonContext
    from ..run import Run

NO_LOCATION = ("no location known: CO2 not computed (pass --region aws:REGION, --country ISO3[/REGION] "
               "or --intensity G_PER_KWH)")


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def boundary_devices(devices: list[DeviceReport]) -> list[DeviceReport]:
    """The devices a report's totals cover (its boundary): measured accelerators; else estimated
    ones (estimates are never summed with measurements); else the host, which is otherwise reported
    on its own."""
    from ..analysis.boundary import boundary

    return boundary(devices, lambda d: d.kind, lambda d: d.energy_source)


def sample_frames(run: Run, batch_rows: int | None = BATCH_ROWS) -> DeviceFrames:
    """The run's samples one device at a time: by Parquet row group (``batch_rows`` rows per read),
    or from the whole table when ``batch_rows`` is None or the files need the whole-table reader's
    cleaning (:class:`~wattprof.run.scan.NotScannable`)."""
    if batch_rows is not None:
        try:
            return SampleScan.open(run.path, batch_rows)
        except NotScannable:
            pass
    return WholeSamples(run.samples)


def build_report(run: Run, *, carbon: CarbonContext | None = None, carbon_note: str | None = None,
                 bottlenecks: bool = True, timeline_points: int = 1500, batch_rows: int | None = BATCH_ROWS) -> Report:
    """The report of ``run``: energy by device, label and token; bottlenecks; CO2 when ``carbon``
    (from :func:`wattprof.analysis.carbon.resolve_intensity`) is given. The samples are read one
    device at a time (``batch_rows`` rows per read; None: from the whole table), never all at once."""
    frames = sample_frames(run, batch_rows)
    try:
        return _build(run, frames, carbon=carbon, carbon_note=carbon_note, bottlenecks=bottlenecks,
                      timeline_points=timeline_points)
    except NotScannable:  # found mid-way (e.g. an infinite value): the whole-table reader cleans it
        return _build(run, WholeSamples(run.samples), carbon=carbon, carbon_note=carbon_note,
                      bottlenecks=bottlenecks, timeline_points=timeline_points)


def _build(run: Run, frames: DeviceFrames, *, carbon: CarbonContext | None, carbon_note: str | None,
           bottlenecks: bool, timeline_points: int) -> Report:
    steps = run.steps
    meta = run.meta
    figures, serve_samples = digest.energy_pass(frames, timeline_points)
    curves = {dev: f.curve for dev, f in figures.items()}
    gaps = device_event_notes(run.events)
    devices = _device_reports(run, figures, gaps)
    chosen = boundary_devices(devices)
    boundary, flags = _boundary_text(devices, chosen)
    estimated = bool(chosen) and all(d.estimated for d in chosen)
    sources = sorted({d.energy_source for d in chosen})
    used_curves = [curves[d.device] for d in chosen]

    a = align_mod.align(used_curves, steps)
    duration = (a.t_last - a.t_first) if used_curves else _span(figures.values())
    measured_any = bool(used_curves)
    outside = _outside_by_label(steps, a.t_first, a.t_last) if measured_any else \
        {str(k): int(v) for k, v in steps.groupby("label").size().items()} if len(steps) else {}
    by_label, unmeasured = _label_reports(steps, a, used_curves, sources, outside, measured_any)
    tokens = float(steps["tokens"].sum()) if len(steps) and steps["tokens"].notna().any() else None
    measured_tokens = sum(lr.tokens or 0.0 for lr in by_label.values() if lr.tokens and lr.energy_j is not None)
    labelled_tokens_energy = sum(lr.energy_j for lr in by_label.values() if lr.tokens and lr.energy_j is not None)
    j_per_token = labelled_tokens_energy / measured_tokens if measured_tokens else None
    if unmeasured:
        flags.append(f"no energy measured for label(s) {', '.join(unmeasured)}: their figures are null, not 0")
    segments = [Segment(str(r.label), float(r.t_start), float(r.t_end))
                for r in align_mod.label_segments(steps).itertuples(index=False)]
    ev = digest.evidence_pass(frames, evidence.evidence_request(figures, frames, run.devices, chosen, a, segments,
                                                        bottlenecks))
    unlabelled, idle = evidence.unlabelled_and_idle(used_curves, a, ev)
    flags += _run_flags(run, devices, by_label, a, ev, gaps)
    nodes = _nodes(meta, devices, chosen)
    host = next((d for d in devices if d.kind == "host"), None)
    if host is not None and host in chosen:
        host = None
    bt: list[WindowVerdict] = []
    wasted = None
    if bottlenecks:
        bt = evidence.bottleneck_verdicts(ev, steps, segments, by_label, unlabelled)
        wasted = _wasted(by_label, idle, float(sum(d.energy_j for d in chosen)))
    from .agents import agent_sections

    agent_tasks, by_model, agents = agent_sections(steps, used_curves, meta, carbon, run.events)
    from .serving import serving_sections

    serving = serving_sections(serve_samples, used_curves, run.devices)
    carbon_report = _carbon(carbon, float(sum(d.energy_j for d in chosen)), by_label, j_per_token, tokens) \
        if carbon is not None and measured_any else None
    return Report(
        run=_run_record(run),
        boundary=boundary, energy_j=float(sum(d.energy_j for d in chosen)) if measured_any else None,  # type: ignore[arg-type]
        energy_source="+".join(sources) or "none",
        estimated=estimated, duration_s=float(duration) if not pd.isna(duration) else 0.0,
        tokens=tokens, j_per_token=j_per_token, steps=len(steps), devices=devices, by_label=by_label, idle=idle,
        host=host, flags=flags, warnings=list(run.warnings), events=len(run.events),
        wasted=wasted, carbon=carbon_report, carbon_note=None if carbon is not None else (carbon_note or NO_LOCATION),
        timeline=[_series(figures[d.device].series, d) for d in devices if d.kind != "host"],
        segments=segments, bottleneck_timeline=bt, nodes=nodes, tasks=agent_tasks, by_model=by_model,
        agents=agents, serving=serving, unlabelled=unlabelled,
        step_clocks=_step_clocks(meta),
    )


def _boundary_text(devices: list[DeviceReport], chosen: list[DeviceReport]) -> tuple[str, list[str]]:
    """The totals' boundary in words (``GPU only (8 devices)``) and the flag when estimates are left out."""
    flags: list[str] = []
    accel = [d for d in devices if d.kind != "host" and d.energy_source != "none"]
    if chosen and not chosen[0].estimated and any(d.estimated for d in accel):
        flags.append("some accelerators have only estimated power: they are reported per device, not in the totals")
    kinds = sorted({d.kind.upper() if d.kind != "host" else "host" for d in chosen})
    boundary = (f"{'+'.join(kinds) or 'no device'} only ({len(chosen)} device{'s' if len(chosen) != 1 else ''})"
                if chosen else "no device with power data")
    return boundary, flags


def _run_record(run: Run) -> dict[str, Any]:
    meta = run.meta
    return {"id": meta.get("id"), "name": run.name, "path": str(run.path), "status": run.status,
            "tags": meta.get("tags", {}), "command": meta.get("command"), "started_at": meta.get("started_at"),
            "ended_at": meta.get("ended_at"), "exit_code": meta.get("exit_code")}


def _step_clocks(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per step source: the clock offset measured against the samples (``wattprof import``)."""
    return {k: {f: v[f] for f in ("offset_s", "offset_uncertainty_s", "offset_method", "offset_score",
                                  "offset_signals") if f in v}
            for k, v in (meta.get("sources") or {}).items() if "offset_s" in v}


def _device_reports(run: Run, figures: dict[str, digest.DeviceFigures],
                    gaps: dict[str, list[str]]) -> list[DeviceReport]:
    """One report per device with samples (serving engines' token counters aside); ``gaps`` (the
    devices' event notes) loses the devices it reports."""
    devices: list[DeviceReport] = []
    for dev, f in figures.items():
        if schema.device_kind(dev) == "serve":  # token counters of a server (reports/serving.py), no power
            continue
        c = f.curve
        info = run.devices.get(dev, {})
        notes = list(c.notes)
        for flag in (quality.source_flag(c.source), f.gap_note):
            if flag:
                notes.append(flag)
        notes += gaps.pop(dev, [])
        devices.append(DeviceReport(
            device=dev, name=info.get("name"), kind=schema.device_kind(dev), energy_j=c.total_j,
            energy_source=c.source, energy_source_description=schema.SOURCE_DESCRIPTION[c.source],
            estimated=c.source == "estimate", power_source=info.get("power_source"),
            mean_power_w=_num(f.mean_power_w), max_power_w=_num(f.max_power_w),
            power_limit_w=_num(info.get("power_limit_w")),
            t_first=_num(c.t_first) if len(c.t) else None, t_last=_num(c.t_last) if len(c.t) else None,
            notes=notes, self_check=f.self_check,
        ))
    return devices


def _label_reports(steps: pd.DataFrame, a: align_mod.Alignment, used_curves: list[energy_mod.EnergyCurve],
                   sources: list[str], outside: dict[str, int], measured_any: bool
                   ) -> tuple[dict[str, LabelReport], list[str]]:
    """Per label: energy, tokens, inference figures and flags; and the labels nothing measured
    (their figures null with the reason, never 0)."""
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
        _inference(lr, steps[steps["label"] == label], used_curves, steps[steps["label"] != label])
        sl = steps[steps["label"] == label]
        flag = quality.short_window_flag((sl["t_end"] - sl["t_start"]).to_numpy(float), "steps", boundary_source)
        if flag:
            lr.flags.append(flag)
        if le.duration_s < quality.COUNTER_RESOLUTION_S and boundary_source == "counter":
            lr.flags.append(f"the label spans only {le.duration_s * 1e3:.0f} ms: under the counter's ~1 s "
                            "resolution, its energy is uncertain by about 2 x power x 100 ms")
        by_label[label] = lr
    unmeasured = []
    for label, sl in steps.groupby("label", sort=False) if len(steps) else ():
        label = str(label)
        if outside.get(label, 0) == len(sl):  # nothing measured: null with the reason, never 0
            lr = by_label.get(label) or LabelReport(
                label=label, energy_j=0.0, in_step_energy_j=0.0, between_steps_energy_j=0.0, duration_s=0.0,
                in_step_duration_s=0.0, tokens=None, j_per_token=None, steps=len(sl), mean_step_s=None,
                mean_power_w=None)
            lr.energy_j = lr.in_step_energy_j = lr.between_steps_energy_j = None  # type: ignore[assignment]
            lr.j_per_token = lr.mean_power_w = lr.j_per_output_token = lr.j_per_request = None
            lr.steady_state = None
            why = ("no samples with power data in the run" if not measured_any else
                   f"all {len(sl)} step(s) lie outside the samples' time range (wrong --utc-offset or clock?)")
            lr.flags.append(f"no energy measured: {why}")
            lr.steady_state_note = None
            by_label[label] = lr
            unmeasured.append(label)
    return by_label, unmeasured


def _run_flags(run: Run, devices: list[DeviceReport], by_label: dict[str, LabelReport], a: align_mod.Alignment,
               ev: digest.Evidence, gaps: dict[str, list[str]]) -> list[str]:
    """The report's flags about the whole run: clocks, overlaps, plausibility, self-checks, merge,
    sources' caveats, an unfinished run, events, devices without samples, storage."""
    steps, meta = run.steps, run.meta
    flags: list[str] = []
    flags += quality.clock_skew_flags(steps, a.t_first, a.t_last)
    flags += a.overlap_notes
    flags += evidence.plausibility_flags(by_label, a, ev)
    flags += [f"self-check {d.device}: counter and integrated instant power differ by "
              f"{d.self_check['difference_pct']:+.1f} % (more than {SELF_CHECK_LIMIT_PCT:g} %): one of them is wrong "
              "(counter reset, sensor fault, gaps); trust neither blindly"
              for d in devices if d.self_check and math.isfinite(d.self_check.get("difference_pct", float("nan")))
              and abs(d.self_check["difference_pct"]) > SELF_CHECK_LIMIT_PCT]
    flags += list((meta.get("merge") or {}).get("flags") or [])
    for key, src in (meta.get("sources") or {}).items():
        flags += [f"{key}: {c}" for c in src.get("caveats") or []]
    if run.status == "unfinished":
        flags.append("run never finished (still recording, or the recorder was killed): data up to the last flush")
    flags += _event_flags(run.events)
    flags += [f"{dev}: {n}" for dev, notes in sorted(gaps.items()) for n in notes]  # devices without samples
    flags += [f"storage: {e}" for e in meta.get("errors") or []]
    return flags


#: A counter and integrated instant power agree to ~1-3 % on real H100 runs (aliasing on short steps up
#: to ~6 %): beyond this, something is wrong.
SELF_CHECK_LIMIT_PCT = 10.0


def _span(figures: Iterable[digest.DeviceFigures]) -> float:
    """Seconds the samples cover (e.g. a GPM-only import: no power, but a span)."""
    lo = [f.t_min for f in figures if np.isfinite(f.t_min)]
    hi = [f.t_max for f in figures if np.isfinite(f.t_max)]
    return float(max(hi) - min(lo)) if lo else 0.0


def _outside_by_label(steps: pd.DataFrame, t_first: float, t_last: float) -> dict[str, int]:
    """Per label, how many of its steps lie entirely outside ``[t_first, t_last]``."""
    if steps.empty:
        return {}
    out = (steps["t_end"] < t_first) | (steps["t_start"] > t_last)
    return {str(k): int(v) for k, v in out.groupby(steps["label"]).sum().items()}


def _wasted(by_label: dict[str, LabelReport], idle: IdleReport, energy_j: float) -> WastedEnergy:
    """Idle energy + the host-side gaps of host-bound labels (never the compute inside their steps)."""
    floor_w = float(sum(idle.idle_power_floor_w.values()))
    between = wait = 0.0
    for lr in by_label.values():
        b = lr.bottleneck
        if b is None or not b.host_bound:
            continue
        between += max(lr.between_steps_energy_j, 0.0)
        util = b.evidence.get("util_pct")
        # requests (inference) have no host gap inside them to price: only time with none in flight counts
        if util is not None and floor_w > 0 and lr.j_per_request is None:
            waiting_s = lr.in_step_duration_s * max(0.0, 1.0 - float(util) / 100.0)
            wait += min(waiting_s * floor_w, max(lr.in_step_energy_j, 0.0))
    host = between + wait
    total = idle.energy_j + host
    return WastedEnergy(
        idle_j=idle.energy_j, host_bound_j=host, total_j=total, share=total / energy_j if energy_j > 0 else 0.0,
        host_between_steps_j=between, host_in_step_wait_j=wait,
        basis=("idle: measured energy of the idle time; host-bound labels: measured energy between their steps + "
               "ESTIMATED waits inside their steps ((1 - utilisation) x step time x idle floor power; not for "
               "inference requests, whose waste is the time with no request in flight)"))


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


def _inference(lr: LabelReport, sl: pd.DataFrame, curves: list[energy_mod.EnergyCurve],
               others: pd.DataFrame | None = None) -> None:
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
    if ss is not None and others is not None and len(others):
        # the window must lie inside this label's own time: other labels' steps inside it would be
        # charged to these requests (a training burst during serving)
        o = others[(others["t_end"] > ss.t_start) & (others["t_start"] < ss.t_end)]
        if len(o):
            o0, o1 = align_mod.merge_intervals(np.clip(o["t_start"].to_numpy(float), ss.t_start, ss.t_end),
                                               np.clip(o["t_end"].to_numpy(float), ss.t_start, ss.t_end))
            why = (f"steady-state window {ss.t_start:.1f}-{ss.t_end:.1f} overlaps {float((o1 - o0).sum()):.1f} s of "
                   f"other labels ({', '.join(sorted(map(str, o['label'].unique())))}): not reported")
            ss = None
    lr.steady_state = ss.to_dict() if ss else None
    lr.steady_state_note = why


#: Recorder events that make figures of the report suspect: kind -> what the flag says.
EVENT_FLAGS = {
    "clock_jump": "the wall clock jumped during the run",
    "device_lost": "a device was lost during the run",
    "collector_timeout": "a collector's reads were slow or stuck",
    "storage_error": "the disk refused samples during the run",
}


#: Per-device collector events (e.g. the NVML collector's) -> what the device's notes say.
DEVICE_EVENTS = ("device_skipped", "device_lost", "metric_missing", "device_read_error", "collector_note")


def device_event_notes(events: pd.DataFrame) -> dict[str, list[str]]:
    """What was missing, per device, from the collectors' per-device events: a device skipped or
    lost, a metric it could not give, readings dropped (the highest count the events reported)."""
    if events.empty or "device" not in events.columns or "kind" not in events.columns:
        return {}
    ev = events[events["kind"].isin(DEVICE_EVENTS) & events["device"].notna()]
    out: dict[str, list[str]] = {}
    for (dev, kind), g in ev.groupby(["device", "kind"], sort=False):
        notes = out.setdefault(str(dev), [])
        reasons = [str(r) for r in dict.fromkeys(g["reason"].dropna())] if "reason" in g.columns else []
        why = f" ({'; '.join(reasons)})" if reasons else ""
        if kind == "device_skipped":
            notes.append(f"not recorded: could not be opened{why}")
        elif kind == "device_lost":
            notes.append(f"lost during the run at t={float(g['t'].min()):.3f}: no samples after that{why}")
        elif kind == "collector_note":  # a collector's note on this device's data (CloudWatch: late, partial)
            notes.extend(str(m).split(f"{dev}: ", 1)[-1] for m in dict.fromkeys(g["message"]))
        elif kind == "metric_missing":
            for row in g.itertuples(index=False):
                metrics = getattr(row, "metrics", None)
                what = ", ".join(metrics) if isinstance(metrics, list) else "a metric"
                notes.append(f"{what} not recorded: {getattr(row, 'reason', '')}")
        else:
            n = int(g["dropped"].max()) if "dropped" in g.columns and g["dropped"].notna().any() else len(g)
            least = "at least " if n >= 3 else ""  # the events are rate-limited past the third
            notes.append(f"{least}{n} reading(s) dropped after transient errors{why}")
    return out


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
        by_label_g_co2e={k: c.co2_g(v.energy_j, ctx) for k, v in by_label.items() if v.energy_j is not None},
        car_km=total.car_km, car_miles=total.car_miles,
    )


def _series(series: tuple[np.ndarray, np.ndarray, str | None], device: DeviceReport) -> Series:
    t, v, col = series
    if col is None:
        return Series(device.device, [], [], "none", device.power_limit_w)
    return Series(device.device, [round(float(x), 3) for x in t], [round(float(x), 2) for x in v], col,
                  device.power_limit_w)

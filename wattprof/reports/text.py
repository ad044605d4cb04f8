"""Plain-text renderer: the report a person reads in a terminal."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Callable
from typing import Any

from .model import CarbonReport, DeviceReport, LabelReport, Report


def fmt_j(j: float | None) -> str:
    if j is None:
        return "-"
    a = abs(j)
    if a >= 3.6e6:
        return f"{j / 3.6e6:.3f} kWh"
    if a >= 1e4:
        return f"{j / 1e3:.2f} kJ"
    if a >= 10:
        return f"{j:.1f} J"
    return f"{j:.3g} J"


def fmt_jpt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.3g} mJ/token" if abs(v) < 1 else f"{v:.3g} J/token"


def fmt_num(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}{unit}"


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_co2(g: float | None) -> str:
    if g is None:
        return "-"
    if abs(g) >= 1e6:
        return f"{g / 1e6:.3g} t CO2e"
    if abs(g) >= 1e3:
        return f"{g / 1e3:.3g} kg CO2e"
    return f"{g:.3g} g CO2e"


def verdict_text(b: dict[str, Any] | None) -> str:
    """``compute-bound + power-capped``; ``-`` when there is no verdict."""
    if not b:
        return "-"
    return " + ".join([str(b.get("verdict", "-"))] + [str(m) for m in b.get("modifiers", [])])


_EVIDENCE: list[tuple[str, Callable[[float, dict[str, Any]], str]]] = [
    ("util_pct", lambda v, e: f"GPU util {v:.0f} %"),
    ("busy_time_frac", lambda v, e: f"kernels in {v:.0%} of periods"),
    ("gap_frac", lambda v, e: f"{v:.0%} of time between steps"),
    ("mem_util_pct", lambda v, e: f"memory util {v:.0f} %"),
    ("mem_util_per_util", lambda v, e: f"memory/util {v:.2f}"),
    ("sm_active_pct", lambda v, e: f"SM active {v:.0f} %"),
    ("sm_active_per_util", lambda v, e: f"SM active/util {v:.2f}"),
    ("tensor_active_pct", lambda v, e: f"tensor active {v:.0f} %"),
    ("dram_busy_pct", lambda v, e: f"DRAM busy while kernels run {v:.0f} %"),
    ("power_w", lambda v, e: f"power {v:.0f} W" + (f" ({e['power_frac']:.0%} of limit)" if "power_frac" in e else "")),
    ("power_cap_frac", lambda v, e: f"power-cap bits {v:.0%} of time" if v >= 0.005 else ""),
    ("thermal_frac", lambda v, e: f"thermal slowdown {v:.0%} of time" if v >= 0.005 else ""),
    ("sm_clock_mhz", lambda v, e: f"SM clock {v:.0f} MHz"),
    ("idle_power_w", lambda v, e: f"idle floor {v:.0f} W"),
]


def evidence_items(b: dict[str, Any] | None) -> list[str]:
    """The numbers behind a verdict, as short phrases (known evidence keys only, in a fixed order)."""
    ev = (b or {}).get("evidence") or {}
    out = []
    for key, fmt in _EVIDENCE:
        v = ev.get(key)
        if isinstance(v, int | float) and v == v:
            out.append(fmt(float(v), ev))
    return [x for x in out if x]


def self_check_text(d: DeviceReport) -> str | None:
    """The counter checked against integrated instant power over the same span, for devices with both."""
    c = d.self_check
    if not c:
        return None
    pct = c.get("difference_pct")
    diff = f"{pct:+.2f} %" if isinstance(pct, int | float) and pct == pct else "- %"
    return (f"self-check {d.device}: counter {fmt_j(c.get('counter_j'))} vs integrated instant power "
            f"{fmt_j(c.get('instant_power_j'))} ({diff})")


def label_notes(r: Report) -> list[str]:
    return [f"{lr.label}: {f}" for lr in r.by_label.values() for f in lr.flags]


def _steady(lr: LabelReport) -> str:
    ss = lr.steady_state
    if ss:
        return (f"{fmt_jpt(ss.get('j_per_output_token'))} over {ss.get('duration_s', 0):.1f} s "
                f"(batch {ss.get('batch')})")
    return lr.steady_state_note or "-"


INFERENCE_HEADERS = ["label", "requests", "prompt tokens", "output tokens", "J/output token", "J/request",
                     "steady state"]


def inference_rows(r: Report) -> list[list[str]]:
    """Labels that are inference requests: per output token, per request, steady state (else why not)."""
    return [[lr.label, str(lr.steps), fmt_num(lr.prompt_tokens, "", 0), fmt_num(lr.output_tokens, "", 0),
             fmt_jpt(lr.j_per_output_token).replace("/token", "/output token"), fmt_j(lr.j_per_request), _steady(lr)]
            for lr in r.by_label.values() if lr.output_tokens is not None]


def short(s: str | None, width: int = 110) -> str:
    return "-" if not s else textwrap.shorten(s, width, placeholder=" ...")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return out


def _device_row(d: DeviceReport) -> list[str]:
    return [d.device, d.name or "-", fmt_j(d.energy_j), d.energy_source + (" (ESTIMATE)" if d.estimated else ""),
            fmt_num(d.mean_power_w, " W"), fmt_num(d.max_power_w, " W"), fmt_num(d.power_limit_w, " W", 0)]


def render(r: Report) -> str:
    run = r.run
    out = [f"wattprof report: {run['name']}  [{run['status']}]"]
    tags = " ".join(f"{k}={v}" for k, v in (run.get("tags") or {}).items())
    out.append(f"  run {run['id']}  {fmt_time(run.get('started_at'))}  {r.duration_s:.1f} s"
               + (f"  tags: {tags}" if tags else "") + f"  ({run['path']})")
    est = "  ESTIMATED" if r.estimated else ""
    out.append("")
    out.append(f"Energy: {fmt_j(r.energy_j)}  boundary: {r.boundary}  source: {r.energy_source}{est}")
    if r.energy_j is None:
        out.append(f"  no energy measured ({r.boundary}); the samples span {r.duration_s:.2f} s")
    elif r.duration_s > 0 and r.energy_j > 0:
        out.append(f"  over {r.duration_s:.2f} s: mean {r.energy_j / r.duration_s:.1f} W"
                   + ("" if r.by_label else "  (no step marks: this total is the measurement)"))
    out.append(f"Steps: {r.steps}   tokens: {fmt_num(r.tokens, '', 0)}   energy per token (labelled steps "
               f"with tokens): {fmt_jpt(r.j_per_token)}")
    out.append("")
    out.append("Devices")
    out += ["  " + x for x in _table(["device", "name", "energy", "source", "mean", "max", "limit"],
                                     [_device_row(d) for d in r.devices])]
    out += ["  " + x for x in (self_check_text(d) for d in r.devices) if x]
    if r.by_label:
        out.append("")
        out.append("By label (energy includes the host time between a label's consecutive steps)")
        rows = []
        for lr in r.by_label.values():
            share = f"{100 * lr.energy_j / r.energy_j:.1f}%" if r.energy_j and lr.energy_j is not None else "-"
            row = [lr.label, fmt_j(lr.energy_j), share, fmt_j(lr.in_step_energy_j),
                   fmt_j(lr.between_steps_energy_j), f"{lr.duration_s:.2f} s", str(lr.steps),
                   fmt_num(lr.tokens, "", 0), fmt_jpt(lr.j_per_token), fmt_num(lr.mean_power_w, " W")]
            if any(x.bottleneck for x in r.by_label.values()):
                b = lr.bottleneck or {}
                row.append(" + ".join([b.get("verdict", "-")] + list(b.get("modifiers", []))))
            rows.append(row)
        headers = ["label", "energy", "share", "in steps", "between", "time", "steps", "tokens", "J/token",
                   "mean power"]
        if any(x.bottleneck for x in r.by_label.values()):
            headers.append("bottleneck")
        out += ["  " + x for x in _table(headers, rows)]
    if inference_rows(r):
        out += ["", "Inference (per request and per output token)"]
        out += ["  " + x for x in _table(INFERENCE_HEADERS, inference_rows(r))]
    out.append("")
    if r.nodes:
        out.append("Nodes: " + "; ".join(
            f"{n.node} {fmt_j(n.energy_j)} ({len(n.devices)} devices"
            + (f", clock {n.clock_offset_s:+.2f} s{' corrected' if n.clock_corrected else ''}"
               if n.clock_offset_s else "") + ")" for n in r.nodes.values()))
    out += unlabelled_lines(r)
    if r.host is not None:
        h = r.host
        kind = "ESTIMATED" if h.estimated else "measured"
        out.append(f"Host (not in the totals, {kind}): {fmt_j(h.energy_j)}, mean {fmt_num(h.mean_power_w, ' W')}; "
                   f"{h.power_source or h.energy_source_description}")
    out += _bottleneck_lines(r) + _wasted_lines(r) + _carbon_lines(r)
    notes = r.flags + label_notes(r) + [f"{d.device}: {n}" for d in r.devices for n in d.notes] + r.warnings
    if notes or r.events:
        out.append("")
        out.append("Notes")
        out += [f"  ! {n}" for n in notes]
        if r.events:
            out.append(f"  {r.events} event(s) recorded (collector errors, restarts): see events-*.jsonl in the run")
    return "\n".join(out) + "\n"


def _bottleneck_lines(r: Report) -> list[str]:
    items = [(lr.label, lr.bottleneck) for lr in r.by_label.values() if lr.bottleneck]
    if r.unlabelled is not None and r.unlabelled.bottleneck:
        items.append(("unlabelled", r.unlabelled.bottleneck))
    if not items:
        return []
    width = max(len(k) for k, _ in items)
    out = ["", "Bottlenecks: what to try (evidence in the markdown/HTML report)"]
    for label, b in items:
        out.append(f"  {label.ljust(width)}  {verdict_text(b)}: {short(b.get('suggestion'))}")
    return out


def _wasted_lines(r: Report) -> list[str]:
    w = r.wasted
    if w is None:
        return []
    return ["", f"Wasted energy (accelerators waiting): {fmt_j(w.total_j)} = {100 * w.share:.1f}% of the run "
                f"(idle {fmt_j(w.idle_j)}, host-side gaps of host-bound labels {fmt_j(w.host_bound_j)}"
                + (f", of which {fmt_j(w.host_in_step_wait_j)} ESTIMATED waits inside steps"
                   if w.host_in_step_wait_j else "") + ")"]


def unlabelled_lines(r: Report) -> list[str]:
    """Time outside every label (all of it without step marks) and the part of it that was idle."""
    u = r.unlabelled
    if u is None:
        return []
    what = "Unlabelled (no step marks: the whole run)" if not r.by_label else \
        "Unlabelled (in the run, outside every label's span)"
    line = f"{what}: {fmt_j(u.energy_j)} over {u.duration_s:.2f} s" + \
        (f", mean {u.mean_power_w:.1f} W" if u.mean_power_w else "")
    idle = (f"  of which idle (accelerators at their idle floor, no activity): {fmt_j(u.idle_energy_j)} over "
            f"{u.idle_duration_s:.2f} s" + (f", mean {r.idle.mean_power_w:.1f} W" if r.idle.mean_power_w else ""))
    return [line, idle]


def carbon_summary(c: CarbonReport) -> str:
    per_mtok = f", {fmt_co2(c.g_co2e_per_million_tokens)} per million tokens" \
        if c.g_co2e_per_million_tokens is not None else ""
    return (f"{fmt_co2(c.g_co2e)}{per_mtok}, about {c.car_km:.3g} km ({c.car_miles:.3g} mi) by car")


def _carbon_lines(r: Report) -> list[str]:
    c = r.carbon
    if c is None:
        return ["", f"CO2: {r.carbon_note}"] if r.carbon_note else []
    year = f", year {c.intensity_year}" if c.intensity_year else ""
    labels = ", ".join(f"{k} {fmt_co2(v)}" for k, v in c.by_label_g_co2e.items())
    out = ["", f"CO2 ({c.basis}): {carbon_summary(c)}",
           f"  {c.location}: {c.intensity_g_per_kwh:.1f} g/kWh ({c.intensity_source}{year}); "
           f"PUE {c.pue:g} ({c.pue_source}); {c.facility_kwh:.4g} kWh at the facility"]
    if labels:
        out.append(f"  by label: {labels}")
    return out

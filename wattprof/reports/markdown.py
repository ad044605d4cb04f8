"""Markdown renderer: GitHub-flavoured tables a reviewer can paste into a pull request.

Every user-controlled string (run name, tags, labels, device names, notes) goes through
:func:`escape`: it cannot break a table, open a code span or become HTML once rendered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .agents_view import (
    CALL_HEADERS,
    MODEL_HEADERS,
    TASK_HEADERS,
    call_rows,
    model_rows,
    serving_lines,
    summary_lines,
    task_rows,
    task_title,
)
from .format import (
    evidence_items,
    fmt_co2,
    fmt_j,
    fmt_jpt,
    fmt_num,
    fmt_time,
    reason_text,
    self_check_text,
    suggestion_text,
    verdict_text,
)
from .model import Report
from .tables import inference_table, label_notes, label_table

IDLE_ROW = "(unlabelled: no label)"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#$])")


def escape(value: object) -> str:
    """Text safe inside a table cell or a paragraph: one line, no HTML, no markdown syntax."""
    s = " ".join(str(value).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """A GFM table; every cell escaped; columns in ``right`` right-aligned (numbers)."""
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(escape(c) if str(c) else " " for c in cells) + " |"

    sep = "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"
    return [line(headers), sep, *(line(r) for r in rows)]


def _pct(part: float | None, whole: float | None) -> str:
    return f"{100 * part / whole:.1f}%" if whole and part is not None else "-"


def _source(r: Report) -> str:
    descr = sorted({d.energy_source_description for d in r.devices if d.energy_source in r.energy_source.split("+")})
    kind = "ESTIMATED" if r.estimated else "measured"
    return f"{r.energy_source} ({', '.join(descr)}), {kind}" if descr else f"{r.energy_source}, {kind}"


def _summary(r: Report) -> list[str]:
    run = r.run
    tags = ", ".join(f"{k}={v}" for k, v in (run.get("tags") or {}).items())
    rows: list[list[object]] = [
        ["Run", f"{run.get('name')} (id {run.get('id')}, {run.get('status')})"],
        ["Started", fmt_time(run.get("started_at"))],
    ]
    if tags:
        rows.append(["Tags", tags])
    rows += [
        ["Energy", fmt_j(r.energy_j) + (" (ESTIMATE)" if r.estimated else "")],
        ["Boundary", r.boundary],
        ["Energy source", _source(r)],
        ["Duration", f"{r.duration_s:.1f} s"],
        ["Steps", str(r.steps)],
        ["Tokens", fmt_num(r.tokens, "", 0)],
        ["Energy per token", f"{fmt_jpt(r.j_per_token)} (labelled steps with tokens)"],
    ]
    if r.wasted is not None:
        rows.append(["Wasted energy", f"{fmt_j(r.wasted.total_j)} ({100 * r.wasted.share:.1f}% of the run)"])
    rows.append(["CO2e", fmt_co2(r.carbon.g_co2e) + f" ({r.carbon.basis})" if r.carbon else "not computed"])
    return ["## Summary", "", *table(["", "value"], rows)]


def _devices(r: Report) -> list[str]:
    rows = [[d.device + (" (not in totals)" if d is r.host else ""), d.name or "-", fmt_j(d.energy_j),
             f"{d.energy_source} ({d.energy_source_description})" + (" ESTIMATE" if d.estimated else ""),
             fmt_num(d.mean_power_w, " W"), fmt_num(d.max_power_w, " W"), fmt_num(d.power_limit_w, " W", 0)]
            for d in r.devices]
    out = ["## Devices", "", *table(["device", "name", "energy", "source", "mean power", "max power", "power limit"],
                                    rows, right=(2, 4, 5, 6))]
    how = [f"- {escape(d.device)}: {escape(d.power_source)}" for d in r.devices if d.power_source]
    how += [f"- {escape(x)}" for x in (self_check_text(d) for d in r.devices) if x]
    return out + ([""] + how if how else [])


def _labels(r: Report) -> list[str]:
    headers, rows = label_table(r, idle=True, bottleneck=True)
    headers = [h.replace("\n", " ") for h in headers]
    return ["## Energy by label", "",
            "Energy of a label includes the host time between its consecutive steps (between); unlabelled is the "
            "time outside every label's span, idle the part of it where the accelerators sat at their idle floor; "
            "J/step = energy / steps.", "",
            *table(headers, rows, right=range(1, len(headers) - 1))]


def _inference(r: Report) -> list[str]:
    headers, rows = inference_table(r, steady=True)
    if not rows:
        return []
    return ["## Inference", "", *table([h.replace("\n", " ") for h in headers], rows, right=range(1, 6))]


def _bottlenecks(r: Report) -> list[str]:
    items = [(lr.label, lr.bottleneck) for lr in r.by_label.values() if lr.bottleneck]
    if r.unlabelled is not None and r.unlabelled.bottleneck:
        items.append((IDLE_ROW, r.unlabelled.bottleneck))
    if not items:
        return []
    rows = [[label, verdict_text(b), reason_text(b),
             "; ".join(evidence_items(b)) or "-", suggestion_text(b) or "-"] for label, b in items]
    return ["## Bottlenecks", "", *table(["label", "verdict", "why", "evidence", "suggestion"], rows)]


def _wasted(r: Report) -> list[str]:
    w = r.wasted
    if w is None:
        return []
    host = [lr.label for lr in r.by_label.values() if lr.bottleneck is not None and lr.bottleneck.host_bound]
    rows = [["idle (no label)", fmt_j(w.idle_j), _pct(w.idle_j, r.energy_j)],
            [f"host-side gaps of host-bound labels ({', '.join(host) or 'none'})", fmt_j(w.host_bound_j),
             _pct(w.host_bound_j, r.energy_j)],
            ["total", fmt_j(w.total_j), f"{100 * w.share:.1f}%"]]
    return ["## Wasted energy", "", "Energy spent while the accelerators waited.", "",
            *table(["", "energy", "share of run"], rows, right=(1, 2))]


def _carbon(r: Report) -> list[str]:
    c = r.carbon
    if c is None:
        return ["## CO2", "", f"> {escape(r.carbon_note or 'CO2 not computed')}"]
    year = f", year {c.intensity_year}" if c.intensity_year else ""
    rows: list[list[object]] = [
        ["CO2e", f"{fmt_co2(c.g_co2e)} ({c.basis})"],
        ["Location", c.location],
        ["Grid intensity", f"{c.intensity_g_per_kwh:.1f} g CO2e/kWh ({c.intensity_source}{year})"],
        ["PUE", f"{c.pue:g} ({c.pue_source})"],
        ["Energy (report boundary)", f"{c.energy_kwh:.4g} kWh"],
        ["Facility energy (x PUE)", f"{c.facility_kwh:.4g} kWh"],
        ["Per million tokens", fmt_co2(c.g_co2e_per_million_tokens)],
        ["Car equivalent", f"{c.car_km:.3g} km ({c.car_miles:.3g} mi); {c.equivalent_source}"],
    ]
    out = ["## CO2", "", *table(["", "value"], rows)]
    if c.by_label_g_co2e:
        lrows = [[k, fmt_co2(v), _pct(v, c.g_co2e)] for k, v in c.by_label_g_co2e.items()]
        out += ["", *table(["label", "CO2e", "share"], lrows, right=(1, 2))]
    return out


def _notes(r: Report) -> list[str]:
    notes = r.flags + label_notes(r) + [f"{d.device}: {n}" for d in r.devices for n in d.notes] + r.warnings
    lines = [f"- {escape(n)}" for n in notes]
    if r.events:
        lines.append(f"- {r.events} event(s) recorded (collector errors, restarts): see events-\\*.jsonl in the run")
    return ["## Notes", "", *lines] if lines else []


def _agents(r: Report) -> list[str]:
    out = (["## Serving engines", ""] + [f"- {escape(x)}" for x in serving_lines(r)] + [""]) if r.serving else []
    if not r.tasks:
        return out[:-1]
    out += [f"## {task_title(r)}", "", *table(TASK_HEADERS, task_rows(r), right=range(1, 11)), ""]
    out += [f"- {escape(x)}" for x in summary_lines(r)]
    if call_rows(r):
        out += ["", "Costliest model calls:", "", *table(CALL_HEADERS, call_rows(r), right=(2, 3, 4))]
    if r.by_model:
        out += ["", "## Energy per model", "", *table(MODEL_HEADERS, model_rows(r), right=range(1, 7))]
    return out


def render(r: Report) -> str:
    est = " **ESTIMATE**" if r.estimated else ""
    head = [f"# wattprof report: {escape(r.run.get('name'))}", "",
            f"**{escape(fmt_j(r.energy_j))}**{est}, boundary: {escape(r.boundary)}, source: {escape(_source(r))}."]
    parts = [head, _summary(r), _devices(r), _labels(r) if r.by_label else [], _inference(r), _agents(r),
             _bottlenecks(r), _wasted(r), _carbon(r), _notes(r)]
    return "\n\n".join("\n".join(p) for p in parts if p) + "\n"

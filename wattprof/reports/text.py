"""Plain-text renderer: the report a person reads in a terminal.

It fits the terminal: ``COLUMNS`` (else the terminal's width, else 100 columns when the output is
not a terminal); tables too wide for it are split into blocks that repeat the label column, prose
is wrapped, never cut. Every column has one unit, named in its header; notes of one kind are said
once, listing the labels they concern; Unix timestamps in notes are shown as dates.

Numbers and phrases come from :mod:`.format`, the tables' cells from :mod:`.tables` (shared with
the Markdown and HTML renderers); this module does the terminal layout.
"""

from __future__ import annotations

import os
import sys
import textwrap

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
    carbon_summary,
    column,
    energy_unit,
    fmt_co2,
    fmt_duration,
    fmt_j,
    fmt_jpt,
    fmt_num,
    fmt_time,
    group_notes,
    self_check_text,
    steady_text,
    suggestion_text,
    verdict_text,
)
from .model import Report
from .tables import inference_labels, inference_table, label_notes, label_table

DEFAULT_WIDTH = 100
MIN_WIDTH = 60


def terminal_width() -> int:
    """``COLUMNS`` when set, else the terminal's width, else 100 (a pipe, a file, CI)."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return max(MIN_WIDTH, int(env))
    try:
        if sys.stdout.isatty():
            return max(MIN_WIDTH, os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError):
        pass
    return DEFAULT_WIDTH


# ---- layout -------------------------------------------------------------------------------------------


def wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    """A paragraph wrapped to ``width`` (never cut)."""
    return textwrap.wrap(text, width, initial_indent=indent,
                         subsequent_indent=indent if subsequent is None else subsequent,
                         break_long_words=True, break_on_hyphens=False) or [indent.rstrip()]


def _cell_lines(rows: list[list[str]], widths: list[int]) -> list[list[list[str]]]:
    """Each cell as its lines: split at newlines (a header's unit under its name), wrapped when wider."""
    return [[[x for line in c.split("\n") for x in (textwrap.wrap(line, w, break_long_words=True) or [""])
              if True] if any(len(line) > w for line in c.split("\n")) else c.split("\n")
             for c, w in zip(r, widths, strict=True)] for r in rows]


def _width(cell: str) -> int:
    return max(len(line) for line in cell.split("\n"))


def layout_table(headers: list[str], rows: list[list[str]], width: int = 10**6, indent: str = "") -> list[str]:
    """A table of ``headers``/``rows`` (first column left, others right-aligned) that fits ``width``:
    columns that do not fit go into a further block repeating the first column; a column too wide
    even alone has its cells wrapped."""
    n = len(headers)
    natural = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    room = width - len(indent)
    first = min(natural[0], max(12, room // 3))
    blocks: list[list[int]] = []
    cur: list[int] = []
    used = first
    for i in range(1, n):
        if cur and used + 2 + natural[i] > room:
            blocks.append(cur)
            cur, used = [], first
        cur.append(i)
        used += 2 + natural[i]
    if cur or not blocks:
        blocks.append(cur)
    out: list[str] = []
    for b, cols in enumerate(blocks):
        idx = [0, *cols]
        widths = [first] + [min(natural[i], max(8, room - first - 2)) for i in cols]
        hs = [headers[i] for i in idx]
        body = [[r[i] for i in idx] for r in rows]
        if b:
            out.append("")
        for cells in _cell_lines([hs], widths) + [[["-" * w] for w in widths]] + _cell_lines(body, widths):
            height = max(len(c) for c in cells)
            for k in range(height):
                parts = []
                for j, (c, w) in enumerate(zip(cells, widths, strict=True)):
                    t = c[k] if k < len(c) else ""
                    parts.append(t.ljust(w) if j == 0 else t.rjust(w))
                out.append((indent + "  ".join(parts)).rstrip())
    return out


def _device_rows(r: Report) -> tuple[list[str], list[list[str]]]:
    es, eu = energy_unit([d.energy_j for d in r.devices])
    energy = column([d.energy_j for d in r.devices], es)
    mean = column([d.mean_power_w for d in r.devices], digits=1)
    peak = column([d.max_power_w for d in r.devices], digits=1)
    limit = column([d.power_limit_w for d in r.devices], digits=0)
    rows = [[d.device, d.name or "-", energy[k], d.energy_source + (" (ESTIMATE)" if d.estimated else ""),
             mean[k], peak[k], limit[k]] for k, d in enumerate(r.devices)]
    return ["device", "name", f"energy\n({eu})", "source", "mean\n(W)", "max\n(W)", "limit\n(W)"], rows


def render(r: Report, width: int | None = None) -> str:
    """The report as text ``width`` columns wide (default: :func:`terminal_width`)."""
    w = width or terminal_width()
    out = _summary_lines(r, w) + _table_lines(r, w)
    out.append("")
    out += _node_lines(r, w) + unlabelled_lines(r, w) + _host_lines(r, w)
    out += _bottleneck_lines(r, w) + _wasted_lines(r, w) + _carbon_lines(r, w)
    out += _agents_lines(r) + _notes_lines(r, w)
    return "\n".join(out) + "\n"


def _summary_lines(r: Report, w: int) -> list[str]:
    run = r.run
    out = wrap(f"wattprof report: {run['name']}  [{run['status']}]", w)
    tags = " ".join(f"{k}={v}" for k, v in (run.get("tags") or {}).items())
    out += wrap(f"run {run['id']}, started {fmt_time(run.get('started_at'))}, lasted {fmt_duration(r.duration_s)}"
                + (f", tags: {tags}" if tags else "") + f", in {run['path']}", w, "  ", "    ")
    est = "  ESTIMATED" if r.estimated else ""
    out.append("")
    out += wrap(f"Energy: {fmt_j(r.energy_j)}  boundary: {r.boundary}  source: {r.energy_source}{est}", w)
    if r.energy_j is None:
        out += wrap(f"no energy measured ({r.boundary}); the samples span {fmt_duration(r.duration_s)}", w, "  ",
                    "    ")
    elif r.duration_s > 0 and r.energy_j > 0:
        out += wrap(f"over {fmt_duration(r.duration_s)}: mean {r.energy_j / r.duration_s:.1f} W"
                    + ("" if r.by_label else "  (no step marks: this total is the measurement)"), w, "  ", "    ")
    out += wrap(f"Steps: {r.steps:,}   tokens: {fmt_num(r.tokens, '', 0)}   energy per token (labelled steps "
                f"with tokens): {fmt_jpt(r.j_per_token)}", w)
    return out


def _table_lines(r: Report, w: int) -> list[str]:
    """Devices (with their self-checks), labels, inference labels (with their steady states)."""
    out = ["", "Devices", *layout_table(*_device_rows(r), width=w, indent="  ")]
    for d in r.devices:
        if (sc := self_check_text(d)) is not None:
            out += wrap(sc, w, "  ", "    ")
    if r.by_label:
        out.append("")
        out += wrap("By label (a label's energy includes the host time between its consecutive steps; "
                    "between: that part; J/step = energy / steps)", w)
        out += layout_table(*label_table(r, in_steps=False), width=w, indent="  ")
    if inference_labels(r):
        out += ["", *wrap("Inference (per request and per output token)", w)]
        out += layout_table(*inference_table(r), width=w, indent="  ")
        for lr in inference_labels(r):
            out += wrap(f"steady state, {lr.label}: {steady_text(lr)}", w, "  ", "    ")
    return out


def _node_lines(r: Report, w: int) -> list[str]:
    if not r.nodes:
        return []
    return wrap("Nodes: " + "; ".join(
        f"{n.node} {fmt_j(n.energy_j)} ({len(n.devices)} devices"
        + (f", clock {n.clock_offset_s:+.2f} s{' corrected' if n.clock_corrected else ''}"
           if n.clock_offset_s else "") + ")" for n in r.nodes.values()), w, "", "  ")


def _host_lines(r: Report, w: int) -> list[str]:
    h = r.host
    if h is None:
        return []
    kind = "ESTIMATED" if h.estimated else "measured"
    return wrap(f"Host (not in the totals, {kind}): {fmt_j(h.energy_j)}, mean {fmt_num(h.mean_power_w, ' W')}; "
                f"{h.power_source or h.energy_source_description}", w, "", "  ")


def _notes_lines(r: Report, w: int) -> list[str]:
    notes = group_notes([("", f) for f in r.flags]) + label_notes(r) + group_notes(
        [(d.device, n) for d in r.devices for n in d.notes]) + group_notes([("", x) for x in r.warnings])
    if not notes and not r.events:
        return []
    out = ["", "Notes"]
    for n in notes:
        out += wrap(n, w, "  ! ", "    ")
    if r.events:
        out += wrap(f"{r.events} event(s) recorded (collector errors, restarts): see events-*.jsonl in the run",
                    w, "  ", "    ")
    return out


def _bottleneck_lines(r: Report, width: int = DEFAULT_WIDTH) -> list[str]:
    items = [(lr.label, lr.bottleneck) for lr in r.by_label.values() if lr.bottleneck]
    if r.unlabelled is not None and r.unlabelled.bottleneck:
        items.append(("unlabelled", r.unlabelled.bottleneck))
    if not items:
        return []
    lw = min(max(len(k) for k, _ in items), width // 4)
    out = ["", *wrap("Bottlenecks: what to try (evidence in the markdown/HTML report)", width)]
    for label, b in items:
        out += wrap(f"{label.ljust(lw)}  {verdict_text(b)}", width, "  ", "  " + " " * (lw + 2))
        out += wrap(suggestion_text(b), width, "  " + " " * (lw + 2))
    return out


def _wasted_lines(r: Report, width: int = DEFAULT_WIDTH) -> list[str]:
    w = r.wasted
    if w is None:
        return []
    return [""] + wrap(f"Wasted energy (accelerators waiting): {fmt_j(w.total_j)} = {100 * w.share:.1f}% of the run "
                       f"(idle {fmt_j(w.idle_j)}, host-side gaps of host-bound labels {fmt_j(w.host_bound_j)}"
                       + (f", of which {fmt_j(w.host_in_step_wait_j)} ESTIMATED waits inside steps"
                          if w.host_in_step_wait_j else "") + ")", width, "", "  ")


def unlabelled_lines(r: Report, width: int = DEFAULT_WIDTH) -> list[str]:
    """Time outside every label (all of it without step marks) and the part of it that was idle."""
    u = r.unlabelled
    if u is None:
        return []
    what = "Unlabelled (no step marks: the whole run)" if not r.by_label else \
        "Unlabelled (in the run, outside every label's span)"
    line = f"{what}: {fmt_j(u.energy_j)} over {fmt_duration(u.duration_s)}" + \
        (f", mean {u.mean_power_w:.1f} W" if u.mean_power_w else "")
    idle = (f"of which idle (accelerators at their idle floor, no activity): {fmt_j(u.idle_energy_j)} over "
            f"{fmt_duration(u.idle_duration_s)}" + (f", mean {r.idle.mean_power_w:.1f} W" if r.idle.mean_power_w else ""))
    return wrap(line, width, "", "  ") + wrap(idle, width, "  ", "    ")


def _carbon_lines(r: Report, width: int = DEFAULT_WIDTH) -> list[str]:
    c = r.carbon
    if c is None:
        return [""] + wrap(f"CO2: {r.carbon_note}", width, "", "  ") if r.carbon_note else []
    year = f", year {c.intensity_year}" if c.intensity_year else ""
    labels = ", ".join(f"{k} {fmt_co2(v)}" for k, v in c.by_label_g_co2e.items())
    out = [""] + wrap(f"CO2 ({c.basis}): {carbon_summary(c)}", width, "", "  ")
    out += wrap(f"{c.location}: {c.intensity_g_per_kwh:.1f} g/kWh ({c.intensity_source}{year}); "
                f"PUE {c.pue:g} ({c.pue_source}); {c.facility_kwh:.4g} kWh at the facility", width, "  ", "    ")
    if labels:
        out += wrap(f"by label: {labels}", width, "  ", "    ")
    return out


def _agents_lines(r: Report) -> list[str]:
    """Serving engines' token counters; agent tasks, their costliest calls, energy per model."""
    out = ["", "Serving engines (token counters)"] + ["  " + x for x in serving_lines(r)] if r.serving else []
    if not r.tasks:
        return out
    out += ["", task_title(r)]
    out += ["  " + x for x in layout_table(TASK_HEADERS, task_rows(r))]
    out += ["  " + x for x in summary_lines(r)]
    if call_rows(r):
        out += ["  Costliest model calls:"] + ["    " + x for x in layout_table(CALL_HEADERS, call_rows(r))]
    if r.by_model:
        out += ["", "Energy per model (concurrency shares of the GPU energy)"]
        out += ["  " + x for x in layout_table(MODEL_HEADERS, model_rows(r))]
    return out

"""Plain-text renderer: the report a person reads in a terminal.

It fits the terminal: ``COLUMNS`` (else the terminal's width, else 100 columns when the output is
not a terminal); tables too wide for it are split into blocks that repeat the label column, prose
is wrapped, never cut. Every column has one unit, named in its header; notes of one kind are said
once, listing the labels they concern; Unix timestamps in notes are shown as dates.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
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


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:\s?(?:ms|s|J|W|%|kJ|MHz|GB))?")
#: a number that is a Unix time in seconds (2001-09-09 .. 2096-10-02): shown as a date
_STAMP = re.compile(r"(?<![\d.])([1-3]\d{9})(\.\d+)?(?![\d])(?:\s?s\b)?")


def humanize_stamps(text: str) -> str:
    """``searched [1795349033.278, ...]`` -> ``searched [2026-11-22 12:03:53.278 UTC, ...]``."""

    def repl(m: re.Match[str]) -> str:
        t = float(m.group(1) + (m.group(2) or ""))
        ms = f".{min(999, round((t % 1) * 1000)):03d}" if m.group(2) else ""
        return dt.datetime.fromtimestamp(int(t), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + ms + " UTC"

    return _STAMP.sub(repl, text)


def group_notes(items: Sequence[tuple[str, str]]) -> list[str]:
    """``(subject, note)`` pairs -> one note per kind: notes that differ only in their numbers are said
    once, with the subjects and their own numbers listed (not the same sentence once per label)."""
    groups: dict[str, list[tuple[str, list[str]]]] = {}
    for subject, note in items:
        note = humanize_stamps(note)
        key = _NUMBER.sub("#", note)
        groups.setdefault(key, []).append((subject, [m.group(0) for m in _NUMBER.finditer(note)]))
    out = []
    for key, members in groups.items():
        subjects = [m[0] for m in members]
        if len(members) == 1:
            subject, nums = members[0]
            text = _fill(key, nums)
            out.append(f"{subject}: {text}" if subject else text)
            continue
        varying = [i for i in range(len(members[0][1])) if len({tuple([m[1][i]]) for m in members}) > 1]
        shown = list(members[0][1])
        for i in varying:
            shown[i] = "…"
        text = _fill(key, shown)
        if varying:
            per = ", ".join(f"{subj} {' / '.join(nums[i] for i in varying)}" for subj, nums in members)
            text += f" (… = {per})"
        out.append(f"{', '.join(s for s in subjects if s)}: {text}")
    return out


def _fill(template: str, nums: list[str]) -> str:
    it = iter(nums)
    return re.sub("#", lambda _: next(it, "#"), template)


def label_notes(r: Report) -> list[str]:
    """Each label's quality flags, one note per kind (listing its labels)."""
    return group_notes([(lr.label, f) for lr in r.by_label.values() for f in lr.flags])


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


# ---- one unit per column ----------------------------------------------------------------------------

_PREFIXES = ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"))


def energy_unit(values: Sequence[float | None], per: str = "") -> tuple[float, str]:
    """The unit a column of joules (``per``: ``/token``, ``/step``) is shown in, from its largest value:
    ``(1e3, "kJ")`` when it reaches 10 kJ, ``(1e-3, "mJ/token")`` when under 1 J/token, ..."""
    vals = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(vals, default=0.0)
    if not per and top >= 3.6e6:
        return 3.6e6, "kWh"
    if not per:
        return (1e3, "kJ") if top >= 1e4 else (1.0, "J")
    for scale, prefix in _PREFIXES:
        if top >= scale:
            return scale, f"{prefix}J{per}"
    return 1e-6, f"µJ{per}"


def column(values: Sequence[float | None], scale: float = 1.0, *, digits: int | None = None) -> list[str]:
    """Numbers of one column in one unit, with the same decimals (about 4 significant digits at the top)."""
    vals = [v / scale for v in values if v is not None and math.isfinite(v)]
    if digits is None:
        top = max((abs(v) for v in vals), default=0.0)
        digits = 0 if top >= 1000 else 1 if top >= 100 else 2 if top >= 1 else 3
        low = min((abs(v) for v in vals if v != 0), default=0.0)
        if low:  # the smallest value keeps 3 significant digits (never a measured 0.49 J shown as 0)
            digits = min(3, max(digits, 2 - math.floor(math.log10(low))))
    return ["-" if v is None or not math.isfinite(v) else f"{v / scale:,.{digits}f}" for v in values]


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


def _table(headers: list[str], rows: list[list[str]], width: int = 10**6, indent: str = "") -> list[str]:
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


def j_per_step(lr: LabelReport) -> float | None:
    """A label's energy per step (its energy includes the host time between its steps)."""
    return lr.energy_j / lr.steps if lr.steps and lr.energy_j is not None else None


#: the rows after the labels: the time outside every label's span, and the idle part of it
UNLABELLED_ROW = "unlabelled (no label)"
IDLE_ROW = "(of which idle)"


def label_table(r: Report, *, in_steps: bool = True, idle: bool = False,
                bottleneck: bool = False) -> tuple[list[str], list[list[str]]]:
    """The per-label table, each column in one unit named in its header (``name\\n(unit)``), for
    every format. ``in_steps=False`` leaves out the in-step energy (energy minus between) for narrow
    text; ``idle`` adds the unlabelled row and its idle part (same units); ``bottleneck`` adds the
    verdict column."""
    labels = list(r.by_label.values())
    i = r.idle
    u = r.unlabelled or r.idle
    extra = [u, i] if idle else []
    energies = [lr.energy_j for lr in labels] + [x.energy_j for x in extra]
    es, eu = energy_unit(energies)
    ins, inu = energy_unit([lr.in_step_energy_j for lr in labels])
    bs, bu = energy_unit([lr.between_steps_energy_j for lr in labels])
    ss, su = energy_unit([j_per_step(lr) for lr in labels], "/step")
    ts, tu = energy_unit([lr.j_per_token for lr in labels], "/token")
    n = len(labels)
    energy = column(energies, es)
    times = column([lr.duration_s for lr in labels] + [x.duration_s for x in extra])
    power = column([lr.mean_power_w for lr in labels] + [x.mean_power_w for x in extra], digits=1)
    cols = [column([lr.in_step_energy_j for lr in labels], ins), column([lr.between_steps_energy_j for lr in labels], bs),
            column([j_per_step(lr) for lr in labels], ss), column([lr.j_per_token for lr in labels], ts)]

    def share(e: float | None) -> str:
        return f"{100 * e / r.energy_j:.1f}" if r.energy_j and e is not None else "-"

    rows = []
    for k, lr in enumerate(labels):
        rows.append([lr.label, energy[k], share(lr.energy_j), cols[0][k], cols[1][k], times[k], f"{lr.steps:,}",
                     fmt_num(lr.tokens, "", 0), cols[2][k], cols[3][k], power[k], verdict_text(lr.bottleneck)])
    if idle:
        rows.append([UNLABELLED_ROW, energy[n], share(u.energy_j), "-", "-", times[n], "-", "-", "-", "-", power[n],
                     verdict_text(u.bottleneck)])
        rows.append([IDLE_ROW, energy[n + 1], share(i.energy_j), "-", "-", times[n + 1], "-", "-", "-", "-",
                     power[n + 1], "idle"])
    headers = ["label", f"energy\n({eu})", "share\n(%)", f"in steps\n({inu})", f"between\n({bu})", "time\n(s)",
               "steps", "tokens", f"energy\n({su})", f"energy\n({tu})", "power\n(W)", "bottleneck"]
    drop = ([] if bottleneck else [11]) + ([] if in_steps else [3])
    for k in drop:  # highest index first
        del headers[k]
        for row in rows:
            del row[k]
    return headers, rows


def inference_table(r: Report, *, steady: bool = False) -> tuple[list[str], list[list[str]]]:
    """Inference labels: requests, tokens, energy per output token and per request, each column in one
    unit named in its header; ``steady`` adds the steady-state column (text puts it below)."""
    headers, rows = _inference_table(r)
    if steady:
        labels = [lr for lr in r.by_label.values() if lr.output_tokens is not None]
        headers.append("steady state")
        for row, lr in zip(rows, labels, strict=True):
            row.append(_steady(lr))
    return headers, rows


def _inference_table(r: Report) -> tuple[list[str], list[list[str]]]:
    labels = [lr for lr in r.by_label.values() if lr.output_tokens is not None]
    os_, ou = energy_unit([lr.j_per_output_token for lr in labels], "/output token")
    rs, ru = energy_unit([lr.j_per_request for lr in labels], "/request")
    ot = column([lr.j_per_output_token for lr in labels], os_)
    rq = column([lr.j_per_request for lr in labels], rs)
    rows = [[lr.label, f"{lr.steps:,}", fmt_num(lr.prompt_tokens, "", 0), fmt_num(lr.output_tokens, "", 0), ot[k],
             rq[k]] for k, lr in enumerate(labels)]
    return ["label", "requests", "prompt\ntokens", "output\ntokens", f"energy\n({ou})", f"energy\n({ru})"], rows


def _duration(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def render(r: Report, width: int | None = None) -> str:
    w = width or terminal_width()
    run = r.run
    out = wrap(f"wattprof report: {run['name']}  [{run['status']}]", w)
    tags = " ".join(f"{k}={v}" for k, v in (run.get("tags") or {}).items())
    out += wrap(f"run {run['id']}, started {fmt_time(run.get('started_at'))}, lasted {_duration(r.duration_s)}"
                + (f", tags: {tags}" if tags else "") + f", in {run['path']}", w, "  ", "    ")
    est = "  ESTIMATED" if r.estimated else ""
    out.append("")
    out += wrap(f"Energy: {fmt_j(r.energy_j)}  boundary: {r.boundary}  source: {r.energy_source}{est}", w)
    if r.energy_j is None:
        out += wrap(f"no energy measured ({r.boundary}); the samples span {_duration(r.duration_s)}", w, "  ", "    ")
    elif r.duration_s > 0 and r.energy_j > 0:
        out += wrap(f"over {_duration(r.duration_s)}: mean {r.energy_j / r.duration_s:.1f} W"
                    + ("" if r.by_label else "  (no step marks: this total is the measurement)"), w, "  ", "    ")
    out += wrap(f"Steps: {r.steps:,}   tokens: {fmt_num(r.tokens, '', 0)}   energy per token (labelled steps "
                f"with tokens): {fmt_jpt(r.j_per_token)}", w)
    out.append("")
    out.append("Devices")
    out += _table(*_device_rows(r), width=w, indent="  ")
    for d in r.devices:
        if (sc := self_check_text(d)) is not None:
            out += wrap(sc, w, "  ", "    ")
    if r.by_label:
        out.append("")
        out += wrap("By label (a label's energy includes the host time between its consecutive steps; "
                    "between: that part; J/step = energy / steps)", w)
        out += _table(*label_table(r, in_steps=False), width=w, indent="  ")
    if any(lr.output_tokens is not None for lr in r.by_label.values()):
        out += ["", *wrap("Inference (per request and per output token)", w)]
        out += _table(*_inference_table(r), width=w, indent="  ")
        for lr in r.by_label.values():
            if lr.output_tokens is not None:
                out += wrap(f"steady state, {lr.label}: {_steady(lr)}", w, "  ", "    ")
    out.append("")
    if r.nodes:
        out += wrap("Nodes: " + "; ".join(
            f"{n.node} {fmt_j(n.energy_j)} ({len(n.devices)} devices"
            + (f", clock {n.clock_offset_s:+.2f} s{' corrected' if n.clock_corrected else ''}"
               if n.clock_offset_s else "") + ")" for n in r.nodes.values()), w, "", "  ")
    out += unlabelled_lines(r, w)
    if r.host is not None:
        h = r.host
        kind = "ESTIMATED" if h.estimated else "measured"
        out += wrap(f"Host (not in the totals, {kind}): {fmt_j(h.energy_j)}, mean {fmt_num(h.mean_power_w, ' W')}; "
                    f"{h.power_source or h.energy_source_description}", w, "", "  ")
    out += _bottleneck_lines(r, w) + _wasted_lines(r, w) + _carbon_lines(r, w)
    from .agents_view import text_lines

    out += text_lines(r)
    notes = group_notes([("", f) for f in r.flags]) + label_notes(r) + group_notes(
        [(d.device, n) for d in r.devices for n in d.notes]) + group_notes([("", x) for x in r.warnings])
    if notes or r.events:
        out.append("")
        out.append("Notes")
        for n in notes:
            out += wrap(n, w, "  ! ", "    ")
        if r.events:
            out += wrap(f"{r.events} event(s) recorded (collector errors, restarts): see events-*.jsonl in the run",
                        w, "  ", "    ")
    return "\n".join(out) + "\n"


def suggestion_text(b: dict[str, Any]) -> str:
    """The suggestion without a lead-in that repeats the verdict ("Compute-bound: ..." after
    ``compute-bound``)."""
    text = str(b.get("suggestion") or "").strip()
    verdict = str(b.get("verdict") or "").lower()
    head, sep, rest = text.partition(":")
    if sep and verdict and head.lower().startswith(verdict) and len(head) <= 60 and rest.strip():
        rest = rest.strip()
        return rest[0].upper() + rest[1:]
    return text


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
    line = f"{what}: {fmt_j(u.energy_j)} over {_duration(u.duration_s)}" + \
        (f", mean {u.mean_power_w:.1f} W" if u.mean_power_w else "")
    idle = (f"of which idle (accelerators at their idle floor, no activity): {fmt_j(u.idle_energy_j)} over "
            f"{_duration(u.idle_duration_s)}" + (f", mean {r.idle.mean_power_w:.1f} W" if r.idle.mean_power_w else ""))
    return wrap(line, width, "", "  ") + wrap(idle, width, "  ", "    ")


def carbon_summary(c: CarbonReport) -> str:
    per_mtok = f", {fmt_co2(c.g_co2e_per_million_tokens)} per million tokens" \
        if c.g_co2e_per_million_tokens is not None else ""
    return (f"{fmt_co2(c.g_co2e)}{per_mtok}, about {c.car_km:.3g} km ({c.car_miles:.3g} mi) by car")


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

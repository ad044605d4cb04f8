"""HTML renderer: one self-contained file (inline CSS, figures as base64 PNG, no JavaScript).

The page loads nothing from the network, and its Content-Security-Policy forbids it to
(``default-src 'none'``): it opens from a laptop, a CI artefact or an air-gapped cluster alike.
Every user-controlled string goes through :func:`html.escape` (see :func:`_cell`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from . import figures
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
    column,
    energy_unit,
    evidence_items,
    fmt_co2,
    fmt_j,
    fmt_jpt,
    fmt_num,
    fmt_time,
    group_notes,
    reason_text,
    self_check_text,
    suggestion_text,
)
from .model import BottleneckVerdict, Report
from .tables import IDLE_ROW, UNLABELLED_ROW, inference_table, label_notes, label_table

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --accent:#0b5cad; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); line-height:1.45;
  font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 32px 48px; }
header h1 { font-size:26px; margin:0 0 4px; overflow-wrap:anywhere; }
header .meta { color:var(--muted); margin:0; overflow-wrap:anywhere; }
header .brand { color:var(--accent); font-size:13px; font-weight:600; letter-spacing:.05em; margin:0 0 4px; }
h2 { font-size:19px; margin:34px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
section > p.lead { color:var(--muted); margin:0 0 10px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(180px, 1fr)); gap:12px; margin:20px 0 8px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card { min-width:0; }
.card .v { font-size:22px; font-weight:650; margin-top:2px; font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
.card .s { color:var(--muted); font-size:13px; overflow-wrap:anywhere; }
.card.main { border-left:4px solid var(--accent); }
.honesty { background:#eef5fc; border:1px solid #cfe2f5; border-radius:8px; padding:10px 14px; margin:8px 0; }
.estimate { background:#fff7ed; border:1px solid #fdba74; color:#7c2d12; border-radius:8px; padding:10px 14px;
  margin:8px 0; font-weight:600; }
.flags { background:#fffbeb; border:1px solid #fcd34d; border-radius:8px; padding:8px 14px 8px 30px; margin:8px 0; }
figure { margin:0 0 14px; background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px; }
figure img { display:block; width:100%; height:auto; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); font-size:14px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top;
  overflow-wrap:break-word; }
th { background:#f3f4f6; font-weight:600; font-size:13px; color:#374151; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.idle td { color:var(--muted); font-style:italic; }
table.kv th { width:230px; }
.lab { display:inline-flex; align-items:center; max-width:100%; overflow-wrap:anywhere; } .lab .sw { flex:none; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:0; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
  white-space:nowrap; background:#e5e7eb; color:#111827; margin:1px 2px 1px 0; }
.v-compute-bound { background:#dbeafe; color:#1e3a8a; } .v-memory-bound { background:#ede9fe; color:#4c1d95; }
.v-host-bound { background:#ffedd5; color:#7c2d12; } .v-idle { background:#e5e7eb; color:#374151; }
.mod { background:#fee2e2; color:#7f1d1d; }
td:first-child { min-width:9em; }
table.bn td:nth-child(3) { width:34%; } table.bn td:nth-child(4) { width:40%; }
.why { margin:0 0 4px; } .ev { margin:0; font-size:13px; color:var(--muted); }
.note { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
ul.checks { color:var(--muted); font-size:13px; margin:8px 0 0; padding-left:18px; }
footer { color:var(--muted); font-size:12px; margin-top:40px; }
table.labels th, table.devices th { white-space:normal; }
@media (max-width: 960px) {
  main { padding:20px 16px 40px; }
  table { font-size:13px; } th, td { padding:5px 6px; }
  .card .v { font-size:20px; }
}
@media print { body { background:#fff; } figure, table { break-inside:avoid; } }
"""


class Safe(str):
    """Markup built here from escaped parts: inserted as is."""


def esc(value: object) -> Safe:
    return Safe(html.escape(str(value), quote=True))


def _cell(value: object) -> str:
    return value if isinstance(value, Safe) else html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], num: Iterable[int] = (),
          row_class: Sequence[str] | None = None, cls: str = "") -> Safe:
    """An HTML table: cells escaped unless :class:`Safe`; columns in ``num`` right-aligned."""
    num = set(num)
    head = "".join(f'<th{" class=num" if i in num else ""}>{_cell(h)}</th>' for i, h in enumerate(headers))
    body = []
    for k, r in enumerate(rows):
        rc = f' class="{row_class[k]}"' if row_class and row_class[k] else ""
        tds = "".join(f'<td{" class=num" if i in num else ""}>{_cell(c)}</td>' for i, c in enumerate(r))
        body.append(f"<tr{rc}>{tds}</tr>")
    c = f' class="{cls}"' if cls else ""
    return Safe(f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
                "</table></div>")


def kv_table(rows: Iterable[tuple[str, object]]) -> Safe:
    body = "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
    return Safe(f'<div class="scroll"><table class="kv"><tbody>{body}</tbody></table></div>')


def badge(b: BottleneckVerdict | None) -> Safe:
    if b is None:
        return Safe("-")
    verdict = b.verdict
    cls = f"v-{verdict}" if verdict in ("compute-bound", "memory-bound", "host-bound", "idle") else ""
    mods = "".join(f'<span class="badge mod">{esc(m)}</span>' for m in b.modifiers)
    return Safe(f'<span class="badge {cls}">{esc(verdict)}</span>{mods}')


def swatch(color: str | None, text: object) -> Safe:
    sw = f'<span class="sw" style="background:{esc(color)}"></span>' if color else ""
    return Safe(f'<span class="lab">{sw}{esc(text)}</span>')


def _pct(part: float | None, whole: float | None) -> str:
    return f"{100 * part / whole:.1f}%" if whole and part is not None else "-"


def _source(r: Report) -> str:
    used = r.energy_source.split("+")
    descr = sorted({d.energy_source_description for d in r.devices if d.energy_source in used})
    return f"{r.energy_source} ({', '.join(descr)})" if descr else r.energy_source


def _card(key: str, value: str, sub: str = "", cls: str = "card") -> str:
    return (f'<div class="{cls}"><div class="k">{esc(key)}</div><div class="v">{esc(value)}</div>'
            + (f'<div class="s">{esc(sub)}</div>' if sub else "") + "</div>")


def _header(r: Report) -> str:
    run = r.run
    tags = ", ".join(f"{k}={v}" for k, v in (run.get("tags") or {}).items())
    meta = [f"run {run.get('id')}", str(run.get("status")), fmt_time(run.get("started_at")), f"{r.duration_s:.1f} s"]
    if tags:
        meta.append(f"tags: {tags}")
    cmd = run.get("command")
    cmd_s = " ".join(cmd) if isinstance(cmd, list) else cmd
    return (f"<header><p class=brand>WATTPROF ENERGY REPORT</p><h1>{esc(run.get('name'))}</h1><p class=meta>{esc(' · '.join(meta))}</p>"
            + (f"<p class=meta>command: {esc(cmd_s)}</p>" if cmd_s else "") + "</header>")


def _cards(r: Report) -> str:
    kind = "ESTIMATE" if r.estimated else "measured"
    cards = [_card("Energy", fmt_j(r.energy_j), f"{r.boundary}; {kind}", "card main"),
             _card("Energy per token", fmt_jpt(r.j_per_token), "labelled steps with tokens"),
             _card("Tokens", fmt_num(r.tokens, "", 0), f"{r.steps} steps"),
             _card("Duration", f"{r.duration_s:.1f} s", f"mean {fmt_num(r.energy_j / r.duration_s, ' W')}"
                   if r.duration_s > 0 and r.energy_j is not None else "")]
    if r.wasted is not None:
        cards.append(_card("Wasted", fmt_j(r.wasted.total_j), f"{100 * r.wasted.share:.1f}% of the run: idle + "
                           "host-bound"))
    if r.carbon is not None:
        cards.append(_card("CO2e", fmt_co2(r.carbon.g_co2e), f"{r.carbon.basis}, {r.carbon.location}"))
    honesty = (f'<p class="honesty"><b>Boundary:</b> {esc(r.boundary)} &nbsp;·&nbsp; <b>Energy source:</b> '
               f"{esc(_source(r))}, {esc(kind)}. Totals cover only this boundary; host energy, where "
               "measured, is listed with the devices and not added in.</p>")
    est = ('<p class="estimate">ESTIMATE: the totals come from a power model, not a measurement.</p>'
           if r.estimated else "")
    return f'<section><div class="cards">{"".join(cards)}</div>{honesty}{est}{_flags(r)}</section>'


def _flags(r: Report) -> str:
    if not r.flags:
        return ""
    return '<ul class="flags">' + "".join(f"<li>{esc(f)}</li>" for f in group_notes([("", x) for x in r.flags])) \
        + "</ul>"


def _figure(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return ""
    return (f'<figure><img src="{figures.data_uri(png)}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _timeline(r: Report) -> str:
    fig = _figure(figures.power_timeline(r), "power over time per device",
                  "Power per device; shaded bands are the spans of each label's steps, unshaded time is unlabelled; "
                  "the dashed line is the device's power limit.")
    return f"<section><h2>Power over time</h2>{fig}</section>" if fig else ""


def _labels(r: Report) -> str:
    if not r.by_label:
        return ""
    colors = figures.label_colors(r) | {UNLABELLED_ROW: figures.IDLE_COLOR, IDLE_ROW: figures.IDLE_COLOR}
    headers, cells = label_table(r, idle=True)
    rows: list[list[object]] = [[swatch(colors.get(row[0]), row[0]), *row[1:]] for row in cells]
    t = table([h.replace("\n", " ") for h in headers], rows, num=range(1, len(headers)),
              row_class=[""] * (len(rows) - 2) + ["idle", "idle"], cls="labels")
    figs = _figure(figures.energy_by_label(r), "energy by label",
                   "Energy by label; the time outside every label (unlabelled) as its own bar.")
    figs += _figure(figures.j_per_token_by_label(r), "energy per token by label",
                    "Energy per token, labels with tokens only.")
    return ("<section><h2>Energy by label</h2><p class=lead>A label's energy includes the host time between its "
            "consecutive steps (between); unlabelled is the time outside every label's span, idle the part of it "
            "where the accelerators sat at their idle floor; J/step = energy / steps. "
            f"Each column is in the unit its header names.</p>{figs}{t}</section>")


def _bottlenecks(r: Report) -> str:
    items = [(lr.label, lr.bottleneck) for lr in r.by_label.values() if lr.bottleneck]
    if r.unlabelled is not None and r.unlabelled.bottleneck:
        items.append((UNLABELLED_ROW, r.unlabelled.bottleneck))
    if not items:
        return ""
    colors = figures.label_colors(r) | {UNLABELLED_ROW: figures.IDLE_COLOR}
    rows = [[swatch(colors.get(label), label), badge(b), _evidence(b), suggestion_text(b) or "-"]
            for label, b in items]
    t = table(["label", "verdict", "why (evidence)", "what to try"], rows, cls="bn")
    return ("<section><h2>Bottlenecks</h2><p class=lead>Why each phase cost what it cost, the numbers behind the "
            f"verdict, and what to try.</p>{t}</section>")


def _evidence(b: BottleneckVerdict) -> Safe:
    why = esc(reason_text(b))
    return Safe(f'<p class="why">{why}</p><p class="ev">{esc(" · ".join(evidence_items(b)))}</p>')


def _wasted(r: Report) -> str:
    w = r.wasted
    if w is None:
        return ""
    host = [lr.label for lr in r.by_label.values() if lr.bottleneck is not None and lr.bottleneck.host_bound]
    rows = [["idle (accelerators at their idle floor)", fmt_j(w.idle_j), _pct(w.idle_j, r.energy_j)],
            [f"host-side gaps of host-bound labels ({', '.join(host) or 'none'})", fmt_j(w.host_bound_j),
             _pct(w.host_bound_j, r.energy_j)],
            [Safe("<b>total</b>"), fmt_j(w.total_j), f"{100 * w.share:.1f}%"]]
    return ("<section><h2>Wasted energy</h2><p class=lead>Energy spent while the accelerators waited.</p>"
            f"{table(['', 'energy', 'share of run'], rows, num=(1, 2))}</section>")


def _carbon(r: Report) -> str:
    c = r.carbon
    if c is None:
        return f'<section><h2>CO2</h2><p class="note">{esc(r.carbon_note or "CO2 not computed")}</p></section>'
    year = f", year {c.intensity_year}" if c.intensity_year else ""
    kv = kv_table([
        ("CO2e", f"{fmt_co2(c.g_co2e)} ({c.basis})"),
        ("Location", c.location),
        ("Grid intensity", f"{c.intensity_g_per_kwh:.1f} g CO2e/kWh ({c.intensity_source}{year})"),
        ("PUE", f"{c.pue:g} ({c.pue_source})"),
        ("Energy (report boundary)", f"{c.energy_kwh:.4g} kWh"),
        ("Facility energy (x PUE)", f"{c.facility_kwh:.4g} kWh"),
        ("Per million tokens", fmt_co2(c.g_co2e_per_million_tokens)),
        ("Car equivalent", f"{c.car_km:.3g} km ({c.car_miles:.3g} mi); {c.equivalent_source}"),
    ])
    colors = figures.label_colors(r)
    by = table(["label", "CO2e", "share"], [[swatch(colors.get(k), k), fmt_co2(v), _pct(v, c.g_co2e)]
                                            for k, v in c.by_label_g_co2e.items()], num=(1, 2))
    return f"<section><h2>CO2</h2>{kv}{'<br>' + by if c.by_label_g_co2e else ''}</section>"


def _devices(r: Report) -> str:
    es, eu = energy_unit([d.energy_j for d in r.devices])
    energy = column([d.energy_j for d in r.devices], es)
    mean = column([d.mean_power_w for d in r.devices], digits=1)
    peak = column([d.max_power_w for d in r.devices], digits=1)
    limit = column([d.power_limit_w for d in r.devices], digits=0)
    rows = [[d.device + (" (not in totals)" if d is r.host else ""), d.name or "-", energy[k],
             f"{d.energy_source} ({d.energy_source_description})" + (" ESTIMATE" if d.estimated else ""),
             d.power_source or "-", mean[k], peak[k], limit[k]] for k, d in enumerate(r.devices)]
    headers = ["device", "name", f"energy ({eu})", "source", "power data", "mean power (W)", "max power (W)",
               "power limit (W)"]
    checks = "".join(f"<li>{esc(x)}</li>" for x in (self_check_text(d) for d in r.devices) if x)
    checks = f'<ul class="checks">{checks}</ul>' if checks else ""
    return f"<section><h2>Devices</h2>{table(headers, rows, num=(2, 5, 6, 7), cls='devices')}{checks}</section>"


def _inference(r: Report) -> str:
    headers, rows = inference_table(r, steady=True)
    if not rows:
        return ""
    t = table([h.replace("\n", " ") for h in headers], rows, num=range(1, 6))
    return (f"<section><h2>Inference</h2><p class=lead>Per request and per output token; steady state when the "
            f"batch stays full long enough.</p>{t}</section>")


def _notes(r: Report) -> str:
    notes = label_notes(r) + group_notes([(d.device, n) for d in r.devices for n in d.notes]) + group_notes(
        [("", x) for x in r.warnings])
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    if r.events:
        items += (f"<li>{r.events} event(s) recorded (collector errors, restarts): see events-*.jsonl in "
                  "the run</li>")
    return f'<section><h2>Notes</h2><ul class="note">{items}</ul></section>' if items else ""


def _agents(r: Report) -> str:
    serving = ("<section><h2>Serving engines</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in serving_lines(r))
               + "</ul></section>") if r.serving else ""
    if not r.tasks:
        return serving
    items = "".join(f"<li>{esc(x)}</li>" for x in summary_lines(r))
    calls = (f"<h3>Costliest model calls</h3>{table(CALL_HEADERS, call_rows(r), num=(2, 3, 4))}"
             if call_rows(r) else "")
    models = (f"<section><h2>Energy per model</h2>{table(MODEL_HEADERS, model_rows(r), num=range(1, 7))}</section>"
              if r.by_model else "")
    return (f"{serving}<section><h2>{esc(task_title(r))}</h2>{table(TASK_HEADERS, task_rows(r), num=range(1, 11))}"
            f'<ul class="note">{items}</ul>{calls}</section>{models}')


def render(r: Report) -> str:
    name = r.run.get("name")
    body = "".join([_header(r), _cards(r), _timeline(r), _labels(r), _inference(r), _agents(r), _bottlenecks(r),
                    _wasted(r), _carbon(r), _devices(r), _notes(r)])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>wattprof: {esc(name)}</title><style>{CSS}</style></head>\n"
            f"<body><main>{body}<footer>wattprof report, schema {r.schema_version}. Self-contained: this file "
            f"loads nothing from the network.</footer></main></body></html>\n")

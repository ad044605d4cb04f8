"""Renderers of ``wattprof compare`` and ``wattprof nightly`` results: text, Markdown, JSON, HTML.

The HTML is one self-contained file (inline SVG trend plots, no scripts, nothing loaded from the
network); every run name, tag and label is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
from dataclasses import asdict
from typing import Any

from ..analysis.nightly import MIN_BASELINE_RUNS, BenchmarkResult, Change, Side
from .registry import by_name
from .summary import RunSummary

# ---- compare --------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v.is_integer() and abs(v) >= 1:
            return f"{v:,.0f}"
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.2f}"
    return str(v)


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{p:+.1f} %"


#: the unit each compared metric is in (``per`` metrics are scaled to mJ/µJ when small)
UNITS: dict[str, str] = {"energy_j": "J", "j_per_token": "J/token", "j_per_step": "J/step", "duration_s": "s",
                         "mean_power_w": "W", "tokens": "tokens", "steps": "steps", "co2e_g": "g CO2e"}


def with_unit(metric: str, v: float | str | None) -> str:
    """``0.0001352`` of ``j_per_token`` -> ``0.135 mJ/token``; ``12590`` J -> ``12.59 kJ``."""
    if v is None:
        return "-"
    if not isinstance(v, (int, float)):
        return str(v)
    unit = UNITS.get(metric)
    if unit is None:
        return _fmt(float(v))
    if unit in ("tokens", "steps"):
        return f"{v:,.0f}"
    if unit.startswith("J"):
        per = unit[1:]
        a = abs(v)
        for scale, prefix in ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ")):
            if a >= scale or scale == 1e-6:
                return f"{v / scale:.4g} {prefix}J{per}"
    if unit == "s":
        return _duration(float(v))
    return f"{v:,.4g} {unit}" if abs(v) < 1000 else f"{v:,.0f} {unit}"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def _md(text: str) -> str:
    return html.escape(str(text)).replace("|", "\\|").replace("`", "\\`").replace("\n", " ")


def compare_text(a: RunSummary, b: RunSummary, sections: dict[str, list[Side]], markdown: bool = False) -> str:
    """``wattprof compare`` as text (or Markdown): each section's metrics, A, B and B's change."""
    name_a, name_b = run_title(a), run_title(b)
    out = []
    if markdown:
        out.append(f"## wattprof compare: {_md(name_a)} → {_md(name_b)}\n")
    else:
        out.append(f"wattprof compare (change = B against A)\n  A = {name_a}\n  B = {name_b}\n")
    for title, rows in sections.items():
        if markdown:
            out.append(f"### {_md(title)}\n")
            out.append("| metric | A | B | change |")
            out.append("| --- | ---: | ---: | ---: |")
            out += [f"| {_md(r.what)} | {_md(with_unit(r.what, r.a))} | {_md(with_unit(r.what, r.b))} | "
                    f"{_pct(r.change_pct)} |" for r in rows]
            out.append("")
        else:
            out.append(title)
            w = max(len(r.what) for r in rows)
            wa = max(14, *(len(with_unit(r.what, r.a)) for r in rows))
            wb = max(14, *(len(with_unit(r.what, r.b)) for r in rows))
            out.append(f"  {'':{w}}  {'A':>{wa}}  {'B':>{wb}}  {'change':>9}")
            for r in rows:
                out.append(f"  {r.what.ljust(w)}  {with_unit(r.what, r.a):>{wa}}  {with_unit(r.what, r.b):>{wb}}  "
                           f"{_pct(r.change_pct):>9}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def compare_markdown(a: RunSummary, b: RunSummary, sections: dict[str, list[Side]]) -> str:
    return compare_text(a, b, sections, markdown=True)


def compare_json(a: RunSummary, b: RunSummary, sections: dict[str, list[Side]]) -> str:
    return json.dumps({"a": a.name, "b": b.name,
                       "sections": {k: [asdict(r) for r in v] for k, v in sections.items()}}, indent=2) + "\n"


# ---- nightly --------------------------------------------------------------------------------------------


def _when(t: float | None) -> str:
    return "-" if not t else dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _what(c: Change) -> str:
    return c.metric + (f" [{c.label}]" if c.label else "")


def _noise(c: Change) -> str:
    return "-" if c.noise_pct is None else f"{c.noise_pct:.1f} %"


def _against(r: BenchmarkResult) -> str:
    n = len(r.baseline_runs)
    if r.baseline_kind == "last":
        return "the previous run"
    if r.baseline_kind.startswith("median:"):
        return f"the median of the last {n} run{'s' if n != 1 else ''}"
    return f"run {r.baseline_runs[0].name} ({r.baseline_runs[0].path})" if r.baseline_runs else r.baseline_kind


def _point_id(s: RunSummary) -> str:
    """What a point is: its commit (tag commit=), else its other tags, else its run id."""
    if s.tags.get("commit"):
        return f"commit {s.tags['commit']}"
    other = {k: v for k, v in s.tags.items() if k != "benchmark"}
    if other:
        return " ".join(f"{k}={v}" for k, v in sorted(other.items()))
    return f"run {s.id or s.path}"


def verdict_sentence(r: BenchmarkResult) -> str:
    """``REGRESSION steady: j_per_token +12.0 % (0.135 mJ/token, was 0.121 mJ/token: the median of the
    last 7 runs; noise 1.2 %, threshold 5.0 %)``"""
    c = r.change
    m = c.metric
    if c.verdict == "no-data":
        return f"NO DATA    {r.benchmark}: {_what(c)} missing in the latest run or its baseline"
    head = "INSUFFICIENT HISTORY" if c.verdict == "insufficient-history" else c.verdict.upper()
    tail = ""
    if c.verdict == "insufficient-history":
        tail = f"; no verdict: {len(r.runs) - 1} earlier run(s), a verdict needs {MIN_BASELINE_RUNS}"
    return (f"{head:11} {r.benchmark}: {_what(c)} {_pct(c.change_pct)} ({with_unit(m, c.latest)}, was "
            f"{with_unit(m, c.baseline)}: {_against(r)}; noise {_noise(c)}, threshold {c.threshold_pct:.1f} %{tail})")


def nightly_summary(results: list[BenchmarkResult]) -> str:
    """The verdicts in a few lines (always printed on stdout by ``wattprof nightly``)."""
    regressions = [r.benchmark for r in results if r.change.verdict == "regression"]
    lines = [verdict_sentence(r) for r in results]
    lines.append(f"{len(results)} benchmark(s), {len(regressions)} regression(s)"
                 + (f": {', '.join(regressions)}" if regressions else ""))
    return "\n".join(lines) + "\n"


def _change_line(c: Change) -> str:
    m = c.metric
    return (f"{c.verdict.upper():11} {_pct(c.change_pct):>9}  baseline {with_unit(m, c.baseline)}  "
            f"latest {with_unit(m, c.latest)}  noise {_noise(c)}")


def nightly_text(results: list[BenchmarkResult], warnings: list[str]) -> str:
    out = []
    for r in results:
        c = r.change
        out.append(f"{r.benchmark}: {_what(c)}, latest run {_when(r.latest.started_at)} ({_point_id(r.latest)}) "
                   f"against {_against(r)}")
        out.append("  " + _change_line(c))
        for lc in r.labels:
            out.append(f"    {lc.label}: {_change_line(lc)}")
        out.append(f"  latest run: {r.latest.path}")
    out.append("")
    out.append(nightly_summary(results).rstrip("\n"))
    out += [f"warning: {w}" for w in warnings]
    return "\n".join(out) + "\n"


def nightly_markdown(results: list[BenchmarkResult], warnings: list[str]) -> str:
    out = ["## wattprof nightly", "", "| benchmark | metric | verdict | change | baseline | latest | noise | runs |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        c = r.change
        out.append(f"| {_md(r.benchmark)} | {_md(_what(c))} | **{c.verdict}** | {_pct(c.change_pct)} | "
                   f"{_md(with_unit(c.metric, c.baseline))} ({_md(_against(r))}) | "
                   f"{_md(with_unit(c.metric, c.latest))} ({_md(_point_id(r.latest))}) | {_noise(c)} | "
                   f"{len(r.series)} |")
    if warnings:
        out += ["", "Warnings:", *[f"- {_md(w)}" for w in warnings]]
    return "\n".join(out) + "\n"


def nightly_json(results: list[BenchmarkResult], warnings: list[str]) -> str:
    doc = {"benchmarks": [{"benchmark": r.benchmark, "baseline": r.baseline_kind,
                           "baseline_runs": [s.path for s in r.baseline_runs], "latest_run": r.latest.path,
                           "unit": UNITS.get(r.change.metric),
                           "change": asdict(r.change), "labels": [asdict(x) for x in r.labels],
                           "series": [{"started_at": t, "value": v, "run": p,
                                       **({"id": s.id, "name": s.name, "tags": s.tags}
                                          if (s := _run_at(r, p)) is not None else {})}
                                      for t, v, p in r.series]}
                          for r in results],
           "regressions": [r.benchmark for r in results if r.change.verdict == "regression"],
           "warnings": warnings}
    return json.dumps(doc, indent=2) + "\n"


def _runs_or_none(r: BenchmarkResult) -> list[RunSummary | None]:
    """The run behind each point of ``r.series`` (None for each when the result has no runs)."""
    return list(r.runs) if r.runs else [None] * len(r.series)


def _run_at(r: BenchmarkResult, path: str) -> RunSummary | None:
    return next((s for s in r.runs if s.path == path), None)


def trend_svg(r: BenchmarkResult) -> str | None:
    """The metric run after run (x: the runs in order, so runs started at the same second stay
    distinct), the baseline band, the regression marked, units on the axis. Inline SVG; None when
    no run has a value (no empty chart)."""
    import warnings as py_warnings

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [(i, v, s) for i, ((_, v, p), s) in enumerate(zip(r.series, _runs_or_none(r), strict=True))
           if v is not None]
    if not pts:
        return None
    c = r.change
    m = c.metric
    # one unit for the whole axis, chosen from the median value
    scale, unit = _axis_unit(m, [v for _, v, _ in pts])
    matplotlib.rcParams["svg.hashsalt"] = "wattprof"
    with py_warnings.catch_warnings():
        py_warnings.simplefilter("ignore")  # layout hints are not the user's business
        fig = Figure(figsize=(9.0, 2.8), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        xs = [i + 1 for i, _, _ in pts]
        ys = [v / scale for _, v, _ in pts]
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color="#1f6feb", label=_what(c))
        if c.baseline is not None:
            band = c.baseline * max(c.threshold_pct, c.noise_pct or 0) / 100
            ax.axhspan((c.baseline - band) / scale, (c.baseline + band) / scale, color="#2da44e", alpha=0.15,
                       label="baseline ± max(threshold, noise)")
            ax.axhline(c.baseline / scale, color="#2da44e", lw=1)
        if c.verdict == "regression":
            ax.plot([xs[-1]], [ys[-1]], marker="X", ms=11, color="#cf222e", ls="none", label="regression")
        ax.set_ylabel(f"{m} ({unit})" if unit else m)
        ax.set_xlabel("run (oldest first; see the table for dates and commits)")
        ax.set_xlim(0.5, len(r.series) + 0.5)
        if len(r.series) <= 20:
            ax.set_xticks(range(1, len(r.series) + 1))
        ax.set_title(r.benchmark, fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # off the data
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _axis_unit(metric: str, values: list[float]) -> tuple[float, str]:
    unit = UNITS.get(metric, "")
    if not unit.startswith("J") or not values:
        return 1.0, unit
    med = sorted(abs(v) for v in values)[len(values) // 2]
    for scale, prefix in ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ")):
        if med >= scale or scale == 1e-6:
            return scale, f"{prefix}{unit}"
    return 1.0, unit


_NIGHTLY_CSS = """
.verdict-regression { border-left:4px solid #b91c1c; } .verdict-improvement { border-left:4px solid #15803d; }
.verdict-insufficient-history, .verdict-no-data, .verdict-ok { border-left:4px solid #9ca3af; }
section[class^="verdict-"] { padding-left:14px; } summary { cursor:pointer; margin:6px 0; color:var(--muted); }
figure.trend { overflow:hidden; }
tr.bad td { background:#fef2f2; } tr.good td { background:#f0fdf4; }
figure.trend svg { display:block; max-width:100%; height:auto; }
"""


def _page(title: str, body: str) -> str:
    from .html import CSP, CSS

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}{_NIGHTLY_CSS}</style></head>\n"
            f"<body><main>{body}<footer>wattprof</footer></main></body></html>\n")


def _report_link(path: str) -> str:
    """A link to the run's own HTML report when one sits in its directory (report.html or *.html)."""
    from pathlib import Path

    d = Path(path)
    found = sorted(d.glob("*.html"), key=lambda f: (f.name != "report.html", f.name)) if d.is_dir() else []
    found = [f for f in found if not f.name.startswith(("nightly", "compare"))]  # the run's own report only
    if not found:
        return ""
    return f' <a href="{html.escape(found[0].resolve().as_uri(), quote=True)}">report</a>'


def nightly_html(results: list[BenchmarkResult], warnings: list[str]) -> str:
    from .html import _card, esc, table

    e = html.escape
    regressions = [r for r in results if r.change.verdict == "regression"]
    cards = [_card("benchmarks", str(len(results)), "judged tonight", "card main"),
             _card("regressions", str(len(regressions)), ", ".join(r.benchmark for r in regressions) or "none")]
    rows, classes = [], []
    for r in results:
        c = r.change
        classes.append({"regression": "bad", "improvement": "good"}.get(c.verdict, ""))
        rows.append([esc(r.benchmark), esc(_what(c)), esc(c.verdict), esc(_pct(c.change_pct)),
                     esc(with_unit(c.metric, c.latest)), esc(with_unit(c.metric, c.baseline)), esc(_against(r)),
                     esc(_noise(c)), esc(str(len(r.series)))])
    summary = table(["benchmark", "metric", "verdict", "change", "latest", "baseline", "baseline is", "noise", "runs"],
                    rows, num=(3, 4, 5, 7, 8), row_class=classes)
    sections = []
    for r in results:
        c = r.change
        svg = trend_svg(r)
        fig = (f"<figure class='trend'>{svg}<figcaption>{e(_what(c))} run after run; green: the baseline and "
               f"the band a change must leave to count.</figcaption></figure>") if svg else \
            "<p class='lead'>No run of this benchmark has a value for this metric: no chart.</p>"
        pts = []
        for i, ((t, v, p), s) in enumerate(zip(r.series, _runs_or_none(r), strict=True), start=1):
            ident = esc(_point_id(s)) if s is not None else esc("-")
            name = esc(s.name) if s is not None else esc("-")
            pts.append([esc(str(i)), esc(_when(t)), name, ident, esc(with_unit(c.metric, v)),
                        type(esc(""))(f"<code>{e(p)}</code>{_report_link(p)}")])
        runs_table = table(["#", "started", "run", "commit / tags", _what(c), "directory"], pts, num=(0, 4))
        sections.append(
            f"<section class='verdict-{e(c.verdict)}'><h2>{e(r.benchmark)}: {e(c.verdict)} "
            f"{e(_pct(c.change_pct))}</h2><p class='lead'>{e(verdict_sentence(r))}</p>{fig}"
            f"<details open><summary>{len(r.series)} runs: date, commit or tags, value, run directory"
            f"</summary>{runs_table}</details></section>")
    warn = "".join(f"<li>{e(w)}</li>" for w in warnings)
    body = (f"<header><p class='brand'>WATTPROF NIGHTLY</p><h1>Energy regressions</h1>"
            f"<p class='meta'>{len(results)} benchmark(s); lower is better for every metric. A change is a "
            "regression when it is worse than both the threshold and the spread of the earlier runs "
            "(noise); a verdict needs at least 3 earlier runs.</p></header>"
            f"<div class='cards'>{''.join(cards)}</div><section><h2>Verdicts</h2>{summary}</section>"
            + "".join(sections) + (f"<section><h2>Warnings</h2><ul>{warn}</ul></section>" if warn else ""))
    return _page("wattprof nightly", body)


def run_title(s: RunSummary) -> str:
    """``train-bench (2026-11-22 11:25 UTC, commit abc123)``: which run a side of a comparison is."""
    return f"{s.name} ({_when(s.started_at)}, {_point_id(s)})"


def compare_html(a: RunSummary, b: RunSummary, sections: dict[str, list[Side]]) -> str:
    """``wattprof compare --format html``: the same tables as the text, on the run report's page style."""
    from .html import _card, esc, table

    e = html.escape
    tot = {s.what: s for s in sections.get("totals", [])}
    cards = []
    for m in ("energy_j", "j_per_token", "duration_s"):
        s = tot.get(m)
        if s is not None:
            cards.append(_card(m.replace("_", " "), _pct(s.change_pct),
                               f"A {with_unit(m, s.a)} → B {with_unit(m, s.b)}", "card main" if m == "energy_j"
                               else "card"))
    parts = []
    for title, rows in sections.items():
        parts.append(f"<section><h2>{e(title)}</h2>" + table(
            ["metric", "A", "B", "change"],
            [[esc(r.what), esc(with_unit(r.what, r.a)), esc(with_unit(r.what, r.b)), esc(_pct(r.change_pct))]
             for r in rows], num=(1, 2, 3)) + "</section>")
    body = (f"<header><p class='brand'>WATTPROF COMPARE</p><h1>{e(a.name)} → {e(b.name)}</h1>"
            f"<p class='meta'>A: {e(a.name)}, {e(_when(a.started_at))} ({e(_point_id(a))}), <code>{e(a.path)}</code>"
            f"<br>B: {e(b.name)}, {e(_when(b.started_at))} ({e(_point_id(b))}), <code>{e(b.path)}</code>"
            "<br>change = B against A; lower is better for energy, J/token, time and power.</p></header>"
            f"<div class='cards'>{''.join(cards)}</div>" + "".join(parts))
    return _page(f"wattprof compare: {a.name} → {b.name}", body)


#: ``{name: renderer}`` of nightly results (a live view of the registry, :mod:`.registry`)
NIGHTLY_RENDERERS = by_name("nightly")
#: ``{name: renderer}`` of ``wattprof compare``: ``(summary_a, summary_b, sections) -> str``
COMPARE_RENDERERS = by_name("compare")

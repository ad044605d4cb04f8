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

from ..analysis.nightly import BenchmarkResult, Change, Side

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


def _md(text: str) -> str:
    return html.escape(str(text)).replace("|", "\\|").replace("`", "\\`").replace("\n", " ")


def compare_text(name_a: str, name_b: str, sections: dict[str, list[Side]], markdown: bool = False) -> str:
    out = []
    if markdown:
        out.append(f"## wattprof compare: {_md(name_a)} → {_md(name_b)}\n")
    else:
        out.append(f"wattprof compare: A = {name_a}   B = {name_b}   (change = B against A)\n")
    for title, rows in sections.items():
        if markdown:
            out.append(f"### {_md(title)}\n")
            out.append("| metric | A | B | change |")
            out.append("| --- | ---: | ---: | ---: |")
            out += [f"| {_md(r.what)} | {_md(_fmt(r.a))} | {_md(_fmt(r.b))} | {_pct(r.change_pct)} |" for r in rows]
            out.append("")
        else:
            out.append(title)
            w = max(len(r.what) for r in rows)
            for r in rows:
                out.append(f"  {r.what.ljust(w)}  {_fmt(r.a):>14}  {_fmt(r.b):>14}  {_pct(r.change_pct):>9}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def compare_json(name_a: str, name_b: str, sections: dict[str, list[Side]]) -> str:
    return json.dumps({"a": name_a, "b": name_b,
                       "sections": {k: [asdict(r) for r in v] for k, v in sections.items()}}, indent=2) + "\n"


# ---- nightly --------------------------------------------------------------------------------------------


def _when(t: float | None) -> str:
    return "-" if not t else dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _change_line(c: Change) -> str:
    noise = "-" if c.noise_pct is None else f"{c.noise_pct:.1f} %"
    return (f"{c.verdict.upper():11} {_pct(c.change_pct):>9}  baseline {_fmt(c.baseline)}  latest {_fmt(c.latest)}  "
            f"noise {noise}  threshold {c.threshold_pct:.1f} %")


def nightly_text(results: list[BenchmarkResult], warnings: list[str]) -> str:
    out = []
    for r in results:
        c = r.change
        out.append(f"{r.benchmark}: {c.metric}{' [' + c.label + ']' if c.label else ''}  latest {_when(r.latest.started_at)}"
                   f"  baseline {r.baseline_kind} ({len(r.baseline_runs)} run(s))")
        out.append("  " + _change_line(c))
        for lc in r.labels:
            out.append(f"    {lc.label}: {_change_line(lc)}")
        out.append(f"  latest run: {r.latest.path}")
    regressions = [r.benchmark for r in results if r.change.verdict == "regression"]
    out.append("")
    out.append(f"{len(results)} benchmark(s), {len(regressions)} regression(s)"
               + (f": {', '.join(regressions)}" if regressions else ""))
    out += [f"warning: {w}" for w in warnings]
    return "\n".join(out) + "\n"


def nightly_markdown(results: list[BenchmarkResult], warnings: list[str]) -> str:
    out = ["## wattprof nightly", "", "| benchmark | metric | verdict | change | baseline | latest | noise | runs |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        c = r.change
        out.append(f"| {_md(r.benchmark)} | {_md(c.metric)} | **{c.verdict}** | {_pct(c.change_pct)} | "
                   f"{_fmt(c.baseline)} | {_fmt(c.latest)} | "
                   f"{'-' if c.noise_pct is None else f'{c.noise_pct:.1f} %'} | {len(r.series)} |")
    if warnings:
        out += ["", "Warnings:", *[f"- {_md(w)}" for w in warnings]]
    return "\n".join(out) + "\n"


def nightly_json(results: list[BenchmarkResult], warnings: list[str]) -> str:
    doc = {"benchmarks": [{"benchmark": r.benchmark, "baseline": r.baseline_kind,
                           "baseline_runs": [s.path for s in r.baseline_runs], "latest_run": r.latest.path,
                           "change": asdict(r.change), "labels": [asdict(x) for x in r.labels],
                           "series": [{"started_at": t, "value": v, "run": p} for t, v, p in r.series]}
                          for r in results],
           "regressions": [r.benchmark for r in results if r.change.verdict == "regression"],
           "warnings": warnings}
    return json.dumps(doc, indent=2) + "\n"


def trend_svg(r: BenchmarkResult) -> str:
    """J/token (or the chosen metric) over time, the baseline band, regressions marked. Inline SVG."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.hashsalt"] = "wattprof"
    pts = [(dt.datetime.fromtimestamp(t, tz=dt.UTC), v) for t, v, _ in r.series if v is not None]
    fig = Figure(figsize=(7.5, 2.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if pts:
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color="#1f6feb", label=r.change.metric)
        c = r.change
        if c.baseline is not None:
            band = c.baseline * max(c.threshold_pct, c.noise_pct or 0) / 100
            ax.axhspan(c.baseline - band, c.baseline + band, color="#2da44e", alpha=0.15,
                       label="baseline ± max(threshold, noise)")
            ax.axhline(c.baseline, color="#2da44e", lw=1)
        if c.verdict == "regression":
            ax.plot([xs[-1]], [ys[-1]], marker="X", ms=11, color="#cf222e", ls="none", label="regression")
    ax.set_ylabel(r.change.metric)
    ax.set_title(r.benchmark, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def nightly_html(results: list[BenchmarkResult], warnings: list[str]) -> str:
    e = html.escape
    rows = []
    for r in results:
        c = r.change
        cls = {"regression": "bad", "improvement": "good"}.get(c.verdict, "")
        rows.append(f"<tr class='{cls}'><td>{e(r.benchmark)}</td><td>{e(c.metric)}</td><td><b>{e(c.verdict)}</b></td>"
                    f"<td>{e(_pct(c.change_pct))}</td><td>{e(_fmt(c.baseline))}</td><td>{e(_fmt(c.latest))}</td>"
                    f"<td>{e('-' if c.noise_pct is None else f'{c.noise_pct:.1f} %')}</td><td>{len(r.series)}</td></tr>")
    plots = "".join(f"<section><h2>{e(r.benchmark)}</h2><figure class='trend'>{trend_svg(r)}</figure>"
                    f"<p class='small'>latest: {e(r.latest.path)}</p></section>" for r in results)
    warn = "".join(f"<li>{e(w)}</li>" for w in warnings)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wattprof nightly</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328;max-width:60rem}}
table{{border-collapse:collapse;margin:1rem 0}} td,th{{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}} tr.bad td{{background:#ffebe9}} tr.good td{{background:#dafbe1}}
.small{{color:#59636e;font-size:.85rem}} figure.trend svg{{max-width:100%;height:auto}}
</style></head><body>
<h1>wattprof nightly</h1>
<p class="small">A change is a regression when it is worse than both the threshold and the noise of the baseline runs
(2 × 1.4826 × MAD / median). Lower is better.</p>
<table><tr><th>benchmark</th><th>metric</th><th>verdict</th><th>change</th><th>baseline</th><th>latest</th>
<th>noise</th><th>runs</th></tr>{''.join(rows)}</table>
{plots}
{f'<h2>Warnings</h2><ul>{warn}</ul>' if warn else ''}
</body></html>
"""


NIGHTLY_RENDERERS = {"text": nightly_text, "markdown": nightly_markdown, "json": nightly_json, "html": nightly_html}

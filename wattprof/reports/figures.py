"""Report figures as PNG bytes: small pure functions of a :class:`~wattprof.reports.model.Report`.

matplotlib is imported inside the functions (importing wattprof stays light) and drawn through
``matplotlib.figure.Figure`` on the Agg canvas: no pyplot, no global state, safe in threads and
servers. PNGs carry no timestamp or software metadata, so the same report gives the same bytes.
Any renderer may use these (HTML embeds them as base64 ``data:`` URIs); :func:`to_png` and
:func:`new_figure` serve other plots (e.g. a nightly trend).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from .format import fmt_j

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .model import Report

# Okabe-Ito (colour-blind safe) first, then distinct extras; labels beyond these cycle.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF")
IDLE_COLOR = "#B0B0B0"
LINE_COLOR = "#1F2937"
LIMIT_COLOR = "#C0392B"
POWER_NAMES = {"power_w": "power", "power_avg_w": "averaged power", "power_est_w": "estimated power"}
MAX_LABEL_CHARS = 40
DPI = 110


def label_colors(report: Report) -> dict[str, str]:
    """A stable colour per label, in the report's label order (shared by all figures)."""
    labels = list(report.by_label) + [s.label for s in report.segments if s.label not in report.by_label]
    return {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(dict.fromkeys(labels))}


def plain(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """A user string safe to draw: one line, shortened, ``$`` not read as mathtext."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure attached to its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, without metadata that would change from one run to the next."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _time_scale(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 600:
        return 60.0, "min"
    return 1.0, "s"


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, axis="y", color="#E5E7EB", linewidth=0.8)
    ax.set_axisbelow(True)


def _shade_segments(ax: Axes, report: Report, t0: float, scale: float, colors: dict[str, str]) -> None:
    """One translucent band per label span; one legend entry per label."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for s in report.segments:
        spans.setdefault(s.label, []).append(((s.t_start - t0) / scale, (s.t_end - s.t_start) / scale))
    for label, xr in spans.items():
        ax.broken_barh(xr, (0, 1), transform=ax.get_xaxis_transform(), facecolor=colors[label], alpha=0.22,
                       edgecolor="none", label=plain(label))


def power_timeline(report: Report, *, width_in: float = 10.0) -> bytes | None:
    """Power over time per device, label spans shaded, the power limit dashed. ``None``: no series."""
    series = [s for s in report.timeline if s.t]
    if not series:
        return None
    t0 = min(s.t[0] for s in series)
    scale, unit = _time_scale(max(s.t[-1] for s in series) - t0)
    names = {d.device: d.name for d in report.devices}
    colors = label_colors(report)
    fig = new_figure(width_in, 0.9 + (2.6 if len(series) == 1 else 1.9) * len(series))
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, s in zip(axes, series, strict=True):
        _shade_segments(ax, report, t0, scale, colors)
        ax.plot([(t - t0) / scale for t in s.t], s.power_w, color=LINE_COLOR, linewidth=0.9,
                label=POWER_NAMES.get(s.power_column, plain(s.power_column)))
        if s.power_limit_w:
            ax.axhline(s.power_limit_w, color=LIMIT_COLOR, linestyle="--", linewidth=1.1,
                       label=f"power limit {s.power_limit_w:.0f} W")
        top = max(max(s.power_w), s.power_limit_w or 0.0)
        ax.set_ylim(0, top * 1.08 if top > 0 else 1)
        ax.set_ylabel("power (W)")
        ax.set_title(plain(f"{s.device}  {names.get(s.device) or ''}", 80), loc="left", fontsize=10)
        _style(ax)
    axes[-1].set_xlabel(f"time since start ({unit})")
    axes[-1].set_xlim(0, None)
    legend: dict[str, Artist] = {}
    for ax in axes:  # one entry per label, line and distinct limit, whichever device has them
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(len(legend), 6),
               frameon=False, fontsize=9)
    return to_png(fig)


#: a log axis only when the values span at least this factor (two decades); below, linear
LOG_SPAN = 100.0


def _bars(names: list[str], values: list[float], colors: list[str], texts: list[str], xlabel: str,
          width_in: float, *, allow_log: bool = True) -> bytes:
    """Horizontal bars with a value text each; linear unless ``allow_log`` and the values span two
    decades or more (then a log axis, said in the axis label)."""
    fig = new_figure(width_in, 0.8 + 0.42 * len(names))
    ax = fig.add_subplot()
    y = list(range(len(names)))
    top = max(values) if values and max(values) > 0 else 1.0
    low = min((v for v in values if v > 0), default=top)
    log = allow_log and top / low >= LOG_SPAN
    left = low / 3 if log else 0.0
    ax.barh(y, [max(v - left, 0.0) for v in values], left=left, color=colors, height=0.62)
    ax.set_yticks(y, [plain(n) for n in names])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left, top * 4)
    else:
        ax.set_xlim(0, top * 1.28)
    for yi, v, t in zip(y, values, texts, strict=True):
        ax.text(max(v, left) * 1.06 if log else v + top * 0.01, yi, t, va="center", fontsize=9, color="#374151")
    ax.set_xlabel(xlabel + (", log scale" if log else ""))
    _style(ax)
    ax.grid(False, axis="y")
    ax.grid(True, axis="x", color="#E5E7EB", linewidth=0.8)
    return to_png(fig)


def energy_by_label(report: Report, *, width_in: float = 10.0) -> bytes | None:
    """Energy per label, idle as its own grey bar, each with its share of the run."""
    colors = label_colors(report)
    rows = [(lr.label, lr.energy_j, colors[lr.label]) for lr in report.by_label.values()]
    rest = report.unlabelled or report.idle
    if rest.duration_s > 0 or rest.energy_j > 0:
        rows.append(("unlabelled (no label)", rest.energy_j, IDLE_COLOR))
    if not rows:
        return None
    scale, unit = (1e3, "kJ") if max(r[1] for r in rows) >= 1e4 else (1.0, "J")
    total = report.energy_j or 1.0
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None
    texts = [f"{fmt_j(e)}  ({100 * e / total:.1f} %)" for _, e, _ in rows]
    # linear always: bar lengths are the shares of the run (a tiny idle bar stays tiny)
    return _bars([r[0] for r in rows], [r[1] / scale for r in rows], [r[2] for r in rows], texts,
                 f"energy ({unit}), boundary: {plain(report.boundary, 60)}", width_in, allow_log=False)


def j_per_token_by_label(report: Report, *, width_in: float = 10.0) -> bytes | None:
    """Energy per token of the labels that have tokens. ``None``: no label has tokens."""
    colors = label_colors(report)
    rows = [(lr.label, lr.j_per_token, colors[lr.label]) for lr in report.by_label.values()
            if lr.tokens and lr.j_per_token is not None]
    if not rows:
        return None
    big = max(r[1] for r in rows) >= 1
    scale, unit = (1.0, "J/token") if big else (1e3, "mJ/token")
    texts = [f"{v * scale:.3g} {unit}" for _, v, _ in rows]
    return _bars([r[0] for r in rows], [r[1] * scale for r in rows], [r[2] for r in rows], texts,
                 f"energy per token ({unit})", width_in)

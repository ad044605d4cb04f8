"""Numbers, units and phrases shared by every renderer (text, Markdown, HTML, live status).

Pure functions of values and of the report model's small classes: no layout (that is each
renderer's job), no I/O. ``-`` stands for a value that is not there (never a 0).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import BottleneckVerdict, CarbonReport, DeviceReport, LabelReport

# ---- one value ------------------------------------------------------------------------------------


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


def fmt_duration(s: float) -> str:
    """``250 ms``, ``12.5 s``, ``3 min 05 s``, ``1 h 02 min 03 s``."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def short(s: str | None, width: int = 110) -> str:
    return "-" if not s else textwrap.shorten(s, width, placeholder=" ...")


# ---- one unit per column --------------------------------------------------------------------------

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


# ---- verdicts -------------------------------------------------------------------------------------


def verdict_text(b: BottleneckVerdict | None) -> str:
    """``compute-bound + power-capped``; ``-`` when there is no verdict."""
    return b.title if b is not None else "-"


_EVIDENCE: list[tuple[str, Callable[[float, dict[str, float]], str]]] = [
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


def evidence_items(b: BottleneckVerdict | None) -> list[str]:
    """The numbers behind a verdict, as short phrases (known evidence keys only, in a fixed order)."""
    ev = b.evidence if b is not None else {}
    out = []
    for key, fmt in _EVIDENCE:
        v = ev.get(key)
        if isinstance(v, int | float) and v == v:
            out.append(fmt(float(v), ev))
    return [x for x in out if x]


def reason_text(b: BottleneckVerdict) -> str:
    """The rule that fired, and which metrics decided: ``util 97 % ... (basis: gpm)``."""
    return f"{b.reason or '-'} (basis: {b.basis or '-'})"


def suggestion_text(b: BottleneckVerdict | None) -> str:
    """The suggestion without a lead-in that repeats the verdict ("Compute-bound: ..." after
    ``compute-bound``)."""
    if b is None:
        return ""
    text = b.suggestion.strip()
    verdict = b.verdict.lower()
    head, sep, rest = text.partition(":")
    if sep and verdict and head.lower().startswith(verdict) and len(head) <= 60 and rest.strip():
        rest = rest.strip()
        return rest[0].upper() + rest[1:]
    return text


# ---- other phrases --------------------------------------------------------------------------------


def self_check_text(d: DeviceReport) -> str | None:
    """The counter checked against integrated instant power over the same span, for devices with both."""
    c = d.self_check
    if not c:
        return None
    pct = c.get("difference_pct")
    diff = f"{pct:+.2f} %" if isinstance(pct, int | float) and pct == pct else "- %"
    return (f"self-check {d.device}: counter {fmt_j(c.get('counter_j'))} vs integrated instant power "
            f"{fmt_j(c.get('instant_power_j'))} ({diff})")


def steady_text(lr: LabelReport) -> str:
    """An inference label's steady state (J per output token over its window), else why there is none."""
    ss = lr.steady_state
    if ss:
        return (f"{fmt_jpt(ss.get('j_per_output_token'))} over {ss.get('duration_s', 0):.1f} s "
                f"(batch {ss.get('batch')})")
    return lr.steady_state_note or "-"


def carbon_summary(c: CarbonReport) -> str:
    per_mtok = f", {fmt_co2(c.g_co2e_per_million_tokens)} per million tokens" \
        if c.g_co2e_per_million_tokens is not None else ""
    return (f"{fmt_co2(c.g_co2e)}{per_mtok}, about {c.car_km:.3g} km ({c.car_miles:.3g} mi) by car")


# ---- notes ----------------------------------------------------------------------------------------

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

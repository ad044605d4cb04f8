"""Plain-text renderer: the report a person reads in a terminal."""

from __future__ import annotations

import datetime as dt

from .model import DeviceReport, Report


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
    out.append(f"Steps: {r.steps}   tokens: {fmt_num(r.tokens, '', 0)}   energy per token (labelled steps "
               f"with tokens): {fmt_jpt(r.j_per_token)}")
    out.append("")
    out.append("Devices")
    out += ["  " + x for x in _table(["device", "name", "energy", "source", "mean", "max", "limit"],
                                     [_device_row(d) for d in r.devices])]
    if r.by_label:
        out.append("")
        out.append("By label (energy includes the host time between a label's consecutive steps)")
        rows = []
        for lr in r.by_label.values():
            share = 100 * lr.energy_j / r.energy_j if r.energy_j else 0.0
            row = [lr.label, fmt_j(lr.energy_j), f"{share:.1f}%", fmt_j(lr.in_step_energy_j),
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
    out.append("")
    out.append(f"Idle (in the run, outside any step's label span): {fmt_j(r.idle.energy_j)} over "
               f"{r.idle.duration_s:.2f} s" + (f", mean {r.idle.mean_power_w:.1f} W" if r.idle.mean_power_w else ""))
    if r.host is not None:
        h = r.host
        kind = "ESTIMATED" if h.estimated else "measured"
        out.append(f"Host (not in the totals, {kind}): {fmt_j(h.energy_j)}, mean {fmt_num(h.mean_power_w, ' W')}; "
                   f"{h.power_source or h.energy_source_description}")
    notes = r.flags + [f"{d.device}: {n}" for d in r.devices for n in d.notes] + r.warnings
    if notes or r.events:
        out.append("")
        out.append("Notes")
        out += [f"  ! {n}" for n in notes]
        if r.events:
            out.append(f"  {r.events} event(s) recorded (collector errors, restarts): see events-*.jsonl in the run")
    return "\n".join(out) + "\n"

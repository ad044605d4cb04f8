"""Rows of the "Energy per agent task" and "Energy per model" sections, shared by the text,
Markdown and HTML renderers (they only read the :class:`~wattprof.reports.model.Report`)."""

from __future__ import annotations

from .format import fmt_co2, fmt_j, fmt_jpt, fmt_num
from .model import Report

TOP_TASKS = 10
TASK_HEADERS = ["task", "energy", "share", "time", "LLM calls", "tool calls", "input tok", "output tok",
                "J/output token", "LLM / tool / wait", "CO2e"]
MODEL_HEADERS = ["model", "calls", "energy", "input tok", "output tok", "J/input token", "J/output token"]
CALL_HEADERS = ["task", "model", "energy", "time", "output tok"]


def task_title(r: Report) -> str:
    a = r.agents
    n = a.tasks if a else len(r.tasks)
    top = f"top {TOP_TASKS} of {n}" if n > TOP_TASKS else f"{n} task{'s' if n != 1 else ''}"
    return f"Energy per agent task ({top}, costliest first)"


def task_rows(r: Report) -> list[list[str]]:
    whole = r.agents.energy_j if r.agents else 0.0
    return [[t.name if len(t.name) <= 40 else t.name[:39] + "~", fmt_j(t.energy_j),
             f"{100 * t.energy_j / whole:.1f}%" if whole else "-", f"{t.duration_s:.2f} s", str(t.llm_calls),
             str(t.tool_calls), fmt_num(t.input_tokens, "", 0), fmt_num(t.output_tokens, "", 0),
             fmt_jpt(t.j_per_output_token).replace("/token", "/output token"),
             f"{fmt_j(t.llm_energy_j)} / {fmt_j(t.tool_energy_j)} / {fmt_j(t.wait_energy_j)}",
             fmt_co2(t.g_co2e) if t.g_co2e is not None else "-"]
            for t in r.tasks[:TOP_TASKS]]


def model_rows(r: Report) -> list[list[str]]:
    return [[m.model, str(m.calls), fmt_j(m.energy_j), fmt_num(m.input_tokens, "", 0), fmt_num(m.output_tokens, "", 0),
             fmt_jpt(m.j_per_input_token).replace("/token", "/input token"),
             fmt_jpt(m.j_per_output_token).replace("/token", "/output token")] for m in r.by_model.values()]


def call_rows(r: Report) -> list[list[str]]:
    calls = r.agents.costliest_calls if r.agents else []
    return [[str(c.get("task")), str(c.get("model")), fmt_j(c.get("energy_j")), f"{c.get('duration_s', 0):.2f} s",
             fmt_num(c.get("output_tokens"), "", 0)] for c in calls]


def summary_lines(r: Report) -> list[str]:
    """Plain sentences: total, distribution, rule, conventions, CO2 location, flags."""
    a = r.agents
    if a is None:
        return []
    out = [f"{a.tasks} task(s), {fmt_j(a.energy_j)} over their spans ({r.boundary}, source {r.energy_source}); "
           f"rule: {a.rule}."]
    d = a.distribution_j
    if d:
        out.append(f"Per task: min {fmt_j(d['min'])}, median {fmt_j(d['p50'])}, p90 {fmt_j(d['p90'])}, "
                   f"max {fmt_j(d['max'])}, mean {fmt_j(d['mean'])}.")
    if a.semconv:
        out.append(f"Spans read with the OpenTelemetry GenAI semantic conventions {a.semconv}.")
    loc = next((t.co2_location for t in r.tasks if t.co2_location), None)
    out.append(f"CO2e per task: location {loc}." if loc else "CO2e per task: not computed (no location given).")
    out += [f"! {f}" for f in a.flags]
    out += [f"! {m.model}: {m.note}" for m in r.by_model.values() if m.note]
    return out


def serving_lines(r: Report) -> list[str]:
    """One line per serving engine scraped during the run (collector prometheus)."""
    out = []
    for s in r.serving:
        per = [w["j_per_output_token"] for w in s["windows"] if w["j_per_output_token"] is not None]
        spread = f"; over time {fmt_jpt(min(per))} to {fmt_jpt(max(per))}" if per else ""
        out.append(f"{s['device']} ({s.get('url') or '-'}): {fmt_num(s['prompt_tokens'], '', 0)} prompt + "
                   f"{fmt_num(s['output_tokens'], '', 0)} output tokens (server's counters) in "
                   f"{s['t_end'] - s['t_start']:.1f} s, {fmt_j(s['energy_j'])} ({r.boundary}): "
                   f"{fmt_jpt(s['j_per_output_token']).replace('/token', '/output token')}{spread}")
    return out

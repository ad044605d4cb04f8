"""The report's tables as cells, shared by every format: per label, inference, the notes per label.

Each column is in one unit, named in its header (``name\\nunit``: text puts the unit on a second
header line, Markdown and HTML join them). Cells are plain strings; each renderer lays them out
and escapes them its own way.
"""

from __future__ import annotations

from .format import column, energy_unit, fmt_num, group_notes, steady_text, verdict_text
from .model import LabelReport, Report

#: the rows after the labels: the time outside every label's span, and the idle part of it
UNLABELLED_ROW = "unlabelled (no label)"
IDLE_ROW = "(of which idle)"


def j_per_step(lr: LabelReport) -> float | None:
    """A label's energy per step (its energy includes the host time between its steps)."""
    return lr.energy_j / lr.steps if lr.steps and lr.energy_j is not None else None


def label_notes(r: Report) -> list[str]:
    """Each label's quality flags, one note per kind (listing its labels)."""
    return group_notes([(lr.label, f) for lr in r.by_label.values() for f in lr.flags])


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


def inference_labels(r: Report) -> list[LabelReport]:
    """Labels that are inference requests (they count output tokens)."""
    return [lr for lr in r.by_label.values() if lr.output_tokens is not None]


def inference_table(r: Report, *, steady: bool = False) -> tuple[list[str], list[list[str]]]:
    """Inference labels: requests, tokens, energy per output token and per request, each column in one
    unit named in its header; ``steady`` adds the steady-state column (text puts it below)."""
    labels = inference_labels(r)
    os_, ou = energy_unit([lr.j_per_output_token for lr in labels], "/output token")
    rs, ru = energy_unit([lr.j_per_request for lr in labels], "/request")
    ot = column([lr.j_per_output_token for lr in labels], os_)
    rq = column([lr.j_per_request for lr in labels], rs)
    rows = [[lr.label, f"{lr.steps:,}", fmt_num(lr.prompt_tokens, "", 0), fmt_num(lr.output_tokens, "", 0), ot[k],
             rq[k]] for k, lr in enumerate(labels)]
    headers = ["label", "requests", "prompt\ntokens", "output\ntokens", f"energy\n({ou})", f"energy\n({ru})"]
    if steady:
        headers.append("steady state")
        for row, lr in zip(rows, labels, strict=True):
            row.append(steady_text(lr))
    return headers, rows

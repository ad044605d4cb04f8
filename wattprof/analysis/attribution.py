"""Energy per request and per agent task when requests overlap on one GPU (pure functions).

The rule, applied to every instant of the run (between any two consecutive span edges):

1. If model calls are in flight, the instant's energy is split **equally among the model calls
   in flight**. Equal share, not by tokens in flight: spans say how many tokens a call consumed
   and produced, not when; a serving engine batches the calls in flight into the same forward
   passes, so each one occupies one slot of every step of the batch while it is in flight, which
   is what an equal share charges. (A token-weighted split would need per-token timing that no
   span carries, and would charge a long prompt's prefill to its decode, or the reverse.)
2. Else, if tool calls are running, it goes equally to them (``tool_energy_j`` of their tasks:
   GPU energy spent while the agent waited on a tool).
3. Else, if task spans are open, it goes equally to those tasks (``wait_energy_j``: the task's
   own waits, e.g. between a tool's answer and the next call).
4. Else it belongs to no task (the run's idle).

Hence the per-call energies sum **exactly** (up to float rounding) to the energy over the union of
the calls, and the per-task energies (calls + tool + wait) to the energy over the union of the
task spans: nothing is counted twice, nothing is lost. A call alone on the GPU gets exactly the
energy over its span. Everything is cumulative sums and ``searchsorted``: no loop over samples.

With a time to first token, a call's share is split at it into prefill (J per input token) and
decode (J per output token), by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .align import energy_over, merge_intervals
from .energy import EnergyCurve

RULE = ("equal share among the model calls in flight at each instant; when none is, among running tool calls "
        "(tool time), else among open task spans (waits)")


@dataclass
class Shares:
    """Energy (J) of each model call, tool call and task wait, in the order given."""

    llm_j: np.ndarray
    llm_prefill_j: np.ndarray
    tool_j: np.ndarray
    wait_j: np.ndarray
    #: energy over the union of the model calls (== llm_j.sum() up to rounding)
    llm_union_j: float


def _in_flight(t0: np.ndarray, t1: np.ndarray, left: np.ndarray) -> np.ndarray:
    """How many intervals ``[t0, t1)`` contain each elementary interval starting at ``left``."""
    return (np.searchsorted(np.sort(t0), left, side="right")
            - np.searchsorted(np.sort(t1), left, side="right")).astype(float)


def shares(curves: list[EnergyCurve], llm: tuple[np.ndarray, np.ndarray], tool: tuple[np.ndarray, np.ndarray],
           task: tuple[np.ndarray, np.ndarray], llm_first_token: np.ndarray | None = None) -> Shares:
    """Apply the rule of this module. Each argument is ``(t_start, t_end)`` arrays (Unix seconds)."""
    l0, l1 = (np.asarray(a, float) for a in llm)
    o0, o1 = (np.asarray(a, float) for a in tool)
    k0, k1 = (np.asarray(a, float) for a in task)
    tf = np.clip(np.asarray(llm_first_token, float), l0, l1) if llm_first_token is not None else l0
    tf = np.where(np.isnan(tf), l0, tf)
    b = np.unique(np.concatenate([l0, l1, o0, o1, k0, k1, tf]))
    if len(b) < 2:
        z = np.zeros
        return Shares(z(len(l0)), z(len(l0)), z(len(o0)), z(len(k0)), 0.0)
    left = b[:-1]
    e = energy_over(curves, left, b[1:])
    n_llm, n_tool, n_task = _in_flight(l0, l1, left), _in_flight(o0, o1, left), _in_flight(k0, k1, left)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_llm = np.where(n_llm > 0, e / n_llm, 0.0)
        s_tool = np.where((n_llm == 0) & (n_tool > 0), e / n_tool, 0.0)
        s_task = np.where((n_llm == 0) & (n_tool == 0) & (n_task > 0), e / n_task, 0.0)

    def over(share: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(share)])
        return cum[np.searchsorted(b, t1)] - cum[np.searchsorted(b, t0)]

    return Shares(over(s_llm, l0, l1), over(s_llm, l0, tf), over(s_tool, o0, o1), over(s_task, k0, k1),
                  float(e[n_llm > 0].sum()))


@dataclass
class TaskEnergy:
    id: str
    name: str
    t_start: float
    t_end: float
    duration_s: float
    #: all the task's energy: its calls' shares + tool time + waits (sums over tasks to their union)
    energy_j: float
    llm_energy_j: float
    tool_energy_j: float
    wait_energy_j: float
    llm_calls: int
    tool_calls: int
    input_tokens: float | None
    output_tokens: float | None
    j_per_output_token: float | None
    tool_s: float
    wait_s: float
    costliest_call: dict[str, Any] | None = None


@dataclass
class ModelEnergy:
    model: str
    calls: int
    energy_j: float
    input_tokens: float | None
    output_tokens: float | None
    prefill_energy_j: float | None
    decode_energy_j: float | None
    j_per_input_token: float | None
    j_per_output_token: float | None
    note: str | None = None


@dataclass
class AgentEnergy:
    tasks: list[TaskEnergy]
    by_model: dict[str, ModelEnergy]
    #: the most expensive model calls: {task, model, span_id, t_start, duration_s, energy_j, output_tokens}
    costliest_calls: list[dict[str, Any]]
    #: energy over the union of all task spans (== sum of task energies)
    union_j: float
    rule: str = RULE
    flags: list[str] = field(default_factory=list)


def _union_length(iv: pd.DataFrame, ids: pd.Index) -> np.ndarray:
    """Length of the union of each task's intervals (columns task_id, t_start, t_end), vectorised:
    sorted by start within a task, an interval adds what reaches past every earlier end."""
    if iv.empty:
        return np.zeros(len(ids))
    d = iv.sort_values(["task_id", "t_start"], kind="stable")
    g = d.groupby("task_id", sort=False)["t_end"]
    prev_end = g.cummax().groupby(d["task_id"], sort=False).shift(1)
    add = (d["t_end"] - np.fmax(d["t_start"], prev_end.fillna(-np.inf))).clip(lower=0)
    return add.groupby(d["task_id"], sort=False).sum().reindex(ids).fillna(0.0).to_numpy(float)


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(float)


def _sum(v: np.ndarray) -> float | None:
    return float(np.nansum(v)) if np.isfinite(v).any() else None


def agent_energy(steps: pd.DataFrame, curves: list[EnergyCurve], *, top: int = 5) -> AgentEnergy | None:
    """Tasks and models of a run whose steps came from GenAI spans (columns ``call``, ``task_id``);
    None when the run has no such steps."""
    if steps.empty or "call" not in steps.columns or "task_id" not in steps.columns:
        return None
    st = steps[steps["call"].isin(["llm", "tool"]) & steps["task_id"].notna()].reset_index(drop=True)
    if st.empty or not curves:
        return None
    llm = st[st["call"] == "llm"].reset_index(drop=True)
    tool = st[st["call"] == "tool"].reset_index(drop=True)
    tasks = _task_windows(st)
    sh = shares(curves, (llm["t_start"].to_numpy(float), llm["t_end"].to_numpy(float)),
                (tool["t_start"].to_numpy(float), tool["t_end"].to_numpy(float)),
                (tasks["t0"].to_numpy(float), tasks["t1"].to_numpy(float)), _col(llm, "t_first_token"))
    llm = llm.assign(energy_j=sh.llm_j, prefill_j=sh.llm_prefill_j,
                     prompt_n=_col(llm, "prompt_tokens"), output_n=_col(llm, "output_tokens"))
    tool = tool.assign(energy_j=sh.tool_j)
    tasks["wait_j"] = sh.wait_j
    u0, u1 = merge_intervals(tasks["t0"].to_numpy(float), tasks["t1"].to_numpy(float))
    union = float(energy_over(curves, u0, u1).sum())
    flags = []
    if "output_tokens" not in llm.columns or llm["output_tokens"].isna().any():
        n = int(llm["output_n"].isna().sum())
        if n:
            flags.append(f"{n} model call(s) without output token counts: J per output token leaves them out")
    return AgentEnergy(_task_records(tasks, llm, tool), _model_records(llm), _costliest_calls(llm, top), union,
                       flags=flags)


def _task_windows(st: pd.DataFrame) -> pd.DataFrame:
    """One row per task (index ``task_id``): ``t0``, ``t1`` (its own span and all its calls), ``name``."""
    g = st.groupby("task_id", sort=False)
    tasks = pd.DataFrame({"t0": g["t_start"].min(), "t1": g["t_end"].max()})
    for c, agg, col in (("k0", "min", "task_start"), ("k1", "max", "task_end")):
        tasks[c] = g[col].agg(agg) if col in st.columns else np.nan
    tasks["t0"] = np.fmin(tasks["t0"], tasks["k0"])  # a task spans its own span and all its calls
    tasks["t1"] = np.fmax(tasks["t1"], tasks["k1"])
    tasks["name"] = g["task_name"].first() if "task_name" in st.columns else tasks.index.astype(str)
    return tasks


def _task_records(tasks: pd.DataFrame, llm: pd.DataFrame, tool: pd.DataFrame) -> list[TaskEnergy]:
    """Each task's energy (its calls' shares + its waits), calls, tokens and costliest call, costliest first."""
    ids = tasks.index
    by_l = llm.groupby("task_id", sort=False)
    by_t = tool.groupby("task_id", sort=False)

    def per_task(g: Any, col: str, how: str) -> np.ndarray:
        v = getattr(g[col], how)(min_count=1) if how == "sum" else getattr(g[col], how)()
        return v.reindex(ids).to_numpy(float)

    e_llm = np.nan_to_num(per_task(by_l, "energy_j", "sum"))
    e_tool = np.nan_to_num(per_task(by_t, "energy_j", "sum"))
    n_llm = by_l.size().reindex(ids).fillna(0).to_numpy(int)
    n_tool = by_t.size().reindex(ids).fillna(0).to_numpy(int)
    p_in = per_task(by_l, "prompt_n", "sum")
    p_out = per_task(by_l, "output_n", "sum")
    tool_s = _union_length(tool, ids)
    busy_s = _union_length(pd.concat([llm[["task_id", "t_start", "t_end"]], tool[["task_id", "t_start", "t_end"]]]),
                           ids)
    top_rows = llm.loc[by_l["energy_j"].idxmax()] if len(llm) else llm
    top_of = {tid: {"span_id": sid, "model": str(m), "energy_j": float(e), "duration_s": float(b - a)}
              for tid, sid, m, e, a, b in zip(top_rows["task_id"], top_rows.get("span_id", [None] * len(top_rows)),
                                              top_rows["label"], top_rows["energy_j"], top_rows["t_start"],
                                              top_rows["t_end"], strict=True)}
    out: list[TaskEnergy] = []
    for i, (tid, row) in enumerate(zip(ids, tasks.itertuples(index=False), strict=True)):
        dur = float(row.t1 - row.t0)
        total = float(e_llm[i] + e_tool[i] + row.wait_j)
        o = None if np.isnan(p_out[i]) else float(p_out[i])
        out.append(TaskEnergy(
            id=str(tid), name=str(row.name), t_start=float(row.t0), t_end=float(row.t1), duration_s=dur,
            energy_j=total, llm_energy_j=float(e_llm[i]), tool_energy_j=float(e_tool[i]), wait_energy_j=float(row.wait_j),
            llm_calls=int(n_llm[i]), tool_calls=int(n_tool[i]),
            input_tokens=None if np.isnan(p_in[i]) else float(p_in[i]), output_tokens=o,
            j_per_output_token=total / o if o else None, tool_s=float(tool_s[i]),
            wait_s=max(dur - float(busy_s[i]), 0.0), costliest_call=top_of.get(tid)))
    out.sort(key=lambda t: t.energy_j, reverse=True)
    return out


def _model_records(llm: pd.DataFrame) -> dict[str, ModelEnergy]:
    """Per model: calls, energy, tokens, and the prefill/decode split where time to first token is known."""
    by_model: dict[str, ModelEnergy] = {}
    for model, mc in llm.groupby("label", sort=True):
        e = float(mc["energy_j"].sum())
        pin, pout = _sum(mc["prompt_n"].to_numpy(float)), _sum(mc["output_n"].to_numpy(float))
        split = "t_first_token" in mc.columns and mc["t_first_token"].notna().all()
        pre = float(mc["prefill_j"].sum()) if split else None
        dec = e - pre if pre is not None else None
        by_model[str(model)] = ModelEnergy(
            model=str(model), calls=len(mc), energy_j=e, input_tokens=pin, output_tokens=pout,
            prefill_energy_j=pre, decode_energy_j=dec,
            j_per_input_token=pre / pin if pre is not None and pin else None,
            j_per_output_token=((dec if dec is not None else e) / pout) if pout else None,
            note=None if split else "no time to first token on the spans: J per output token counts the whole "
                                    "call (prompt and output), J per input token not computed")
    return by_model


def _costliest_calls(llm: pd.DataFrame, top: int) -> list[dict[str, Any]]:
    return [{"task": str(r["task_name"]) if "task_name" in llm.columns else str(r["task_id"]),
             "model": str(r["label"]), "span_id": r.get("span_id"), "t_start": float(r["t_start"]),
             "duration_s": float(r["t_end"] - r["t_start"]), "energy_j": float(r["energy_j"]),
             "output_tokens": None if np.isnan(r["output_n"]) else float(r["output_n"])}
            for _, r in llm.nlargest(top, "energy_j").iterrows()]


def distribution(values: list[float]) -> dict[str, float] | None:
    """min / median / p90 / max / mean of per-task energies."""
    if not values:
        return None
    v = np.asarray(values, float)
    return {"min": float(v.min()), "p50": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "max": float(v.max()), "mean": float(v.mean())}

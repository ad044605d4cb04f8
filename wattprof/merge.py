"""One run from the per-node shards of a multi-node job (``wattprof merge``).

Each node records its own run (local rank 0 samples the node's GPUs, every rank writes its steps:
:mod:`wattprof.distributed`). :func:`merge_runs` copies them into one run directory:

- samples: one source per node (``samples-<node>.parquet``), device ids prefixed by the node
  (``node1/gpu:0``, ``node1/host``), so the report lists every GPU and sums them all;
- steps and events: copied, with a ``node`` field (ranks keep their ``rank``);
- meta: devices and sources of every node (prefixed), ``nodes`` (hostname, run id, shard path,
  devices, clock offset per node), ``merge`` (reference node, method, ``flags``), the earliest
  start and the latest end, and the worst status (failed > interrupted > unfinished > finished).

Clocks. Each node stamps its samples and steps with its own clock; a node whose clock is off by
more than the sampling interval would have its energy attributed to the wrong steps. Offsets are
measured against the reference node (the first shard), from matching steps, else from correlated
power (the methods: :mod:`wattprof.analysis.clock_offset.nodes`).

An offset larger than ``threshold_s`` (default: the largest sampling interval of the shards) is
reported in ``meta["merge"]["flags"]`` and, with ``correct=True`` (default), removed from that
node's samples, steps and events so that every node is on the reference clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import schema
from .analysis.clock_offset.nodes import ClockOffset, offset_from_power, offset_from_steps
from .errors import InputError
from .run import JsonlAppender, Run, RunWriter, safe_name

_STATUS_RANK = {"finished": 0, "imported": 0, "unfinished": 1, "recording": 1, "interrupted": 2, "failed": 3}


@dataclass
class MergeResult:
    out: Path
    nodes: list[str]
    offsets: dict[str, ClockOffset]
    flags: list[str] = field(default_factory=list)
    steps: int = 0
    samples: int = 0


# ---- merge ------------------------------------------------------------------------------------------


def _node_names(runs: list[Run], names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(runs):
            raise InputError(f"{len(names)} node names for {len(runs)} shards")
        out = [safe_name(n) for n in names]
    else:
        out = []
        for i, r in enumerate(runs):
            tag = (r.meta.get("tags") or {}).get("node")
            out.append(safe_name(str(tag)) if tag else f"node{i}")
    if len(set(out)) != len(out):
        out = [f"node{i}" for i in range(len(runs))]
    return out


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _open_shards(shards: list[str | Path], out: str | Path) -> list[Run]:
    """The shards opened, refused when the output holds a run or a shard is given twice (or copied)."""
    if len(shards) < 1:
        raise InputError("merge needs at least one run")
    if (Path(out) / "meta.json").exists():
        raise InputError("already holds a run: choose another output directory", path=str(out))
    seen: dict[Path, str] = {}
    for p in shards:
        key = Path(p).resolve()
        if key in seen:
            raise InputError(f"the same run is given twice ({seen[key]} and {p}): a run is merged with other "
                             "nodes' runs, never with itself", path=str(p))
        seen[key] = str(p)
    runs = [Run.open(p) for p in shards]
    ids = [r.meta.get("id") for r in runs]
    for i, rid in enumerate(ids):
        if rid and ids.index(rid) != i:
            raise InputError(f"{shards[ids.index(rid)]} and {shards[i]} are copies of one run (id {rid}): a run is "
                             "merged with other nodes' runs, never with itself", path=str(shards[i]))
    return runs


def _clock_offsets(runs: list[Run], nodes: list[str], threshold: float, correct: bool,
                   flags: list[str]) -> dict[str, ClockOffset]:
    """Each node's clock offset against the first (the reference); what is notable goes to ``flags``."""
    ref_steps, ref_samples = runs[0].steps, runs[0].samples
    offsets: dict[str, ClockOffset] = {nodes[0]: ClockOffset(0.0, 0.0, "reference")}
    for node, r in zip(nodes[1:], runs[1:], strict=True):
        est = offset_from_steps(r.steps, ref_steps) or offset_from_power(r.samples, ref_samples)
        if est is None:
            est = ClockOffset(0.0, float("nan"), "none",
                              note="no matching steps and no correlated power: clock offset unknown, not corrected")
            flags.append(f"clock offset of {node} against {nodes[0]} could not be measured (no matching steps, no "
                         "correlated power): its steps may be misaligned with the other nodes' samples")
        elif abs(est.offset_s) > threshold:
            est.corrected = correct
            flags.append(f"clock offset: {node} is {est.offset_s:+.3f} s (+/- {est.uncertainty_s:.3f} s, from "
                         f"{est.method}) from {nodes[0]}, more than the {threshold:g} s sampling interval; "
                         + ("corrected: its samples, steps and events were shifted onto the reference clock"
                            if correct else "NOT corrected: its energy is attributed to shifted steps"))
        offsets[node] = est
        r.release()  # memory: the reference and one other node at a time, never every node's tables
    return offsets


def _copy_lines(path: Path, records: list[dict], node: str, shift: float, times: tuple[str, ...]) -> None:
    """Write a node's steps or events to ``path``: missing values left out, ``times`` shifted onto
    the reference clock, each tagged with its node."""
    app = JsonlAppender(path)
    try:
        for rec in records:
            row = {k: c for k, v in rec.items() if (c := _clean(v)) is not None}
            for t in times:
                if isinstance(row.get(t), int | float):
                    row[t] = float(row[t]) - shift
            row["node"] = node
            app.append(row)
    finally:
        app.close()


def _copy_node(writer: RunWriter, node: str, r: Run, shift: float) -> tuple[int, int]:
    """Copy one node's samples, devices, steps and events into the merged run; (samples, steps)."""
    n_samples = n_steps = 0
    s = r.samples
    if not s.empty:
        s = s.copy()
        s[schema.T] = s[schema.T].astype(float) - shift
        s[schema.DEVICE] = node + "/" + s[schema.DEVICE].astype(str)
        source_key = writer.add_source(node, {"kind": "merge", "node": node, "from": str(Path(r.path).resolve()),
                                              "run_id": r.meta.get("id"), "sources": r.meta.get("sources") or {},
                                              "clock_shift_s": -shift,
                                              "devices": sorted(s[schema.DEVICE].unique().tolist())})
        writer.write_samples_frame(source_key, s)
        n_samples = len(s)
    for dev, info in (r.meta.get("devices") or {}).items():
        writer.meta["devices"][f"{node}/{dev}"] = {**info, "node": node}
    st = r.steps
    if not st.empty:
        _copy_lines(writer.path / f"steps-{node}.jsonl", st.to_dict("records"), node, shift, ("t_start", "t_end"))
        n_steps = len(st)
    ev = r.events
    if not ev.empty:
        _copy_lines(writer.path / f"events-{node}.jsonl", ev.to_dict("records"), node, shift, ("t",))
    return n_samples, n_steps


def merge_runs(shards: list[str | Path], out: str | Path, *, names: list[str] | None = None, correct: bool = True,
               threshold_s: float | None = None, name: str | None = None) -> MergeResult:
    """Merge the runs ``shards`` (one per node; the first is the clock reference) into a new run
    at ``out``. ``names``: node names (default: each shard's ``node`` tag, else ``node<i>``)."""
    runs = _open_shards(shards, out)
    nodes = _node_names(runs, names)
    intervals = [float(r.meta.get("interval_s") or 0) for r in runs]
    threshold = float(threshold_s) if threshold_s is not None else max(max(intervals), 0.01)
    ref = runs[0]
    flags: list[str] = []
    offsets = _clock_offsets(runs, nodes, threshold, correct, flags)

    writer = RunWriter.create(out, name=name or f"{ref.name} (merged)", tags={
        k: v for k, v in (ref.meta.get("tags") or {}).items() if k != "node"}, command=ref.meta.get("command"),
        interval_s=max(intervals) or None)
    meta = writer.meta
    meta["nodes"] = {}
    total_steps = total_samples = 0
    starts, ends = [], []
    status = "finished"
    exit_code = None
    for node, r in zip(nodes, runs, strict=True):
        off = offsets[node]
        shift = off.offset_s if off.corrected else 0.0
        n_samples, n_steps = _copy_node(writer, node, r, shift)
        r.release()  # copied: its tables are on disk in the merged run
        total_samples += n_samples
        total_steps += n_steps
        m = r.meta
        if m.get("started_at") is not None:
            starts.append(float(m["started_at"]) - shift)
        if m.get("ended_at") is not None:
            ends.append(float(m["ended_at"]) - shift)
        if _STATUS_RANK.get(r.status, 1) > _STATUS_RANK.get(status, 0):
            status = r.status
        if exit_code is None and m.get("exit_code"):
            exit_code = m.get("exit_code")
        meta["nodes"][node] = {
            "hostname": (m.get("host") or {}).get("hostname"), "run_id": m.get("id"),
            "path": str(Path(r.path).resolve()), "status": r.status,
            "devices": sorted(f"{node}/{d}" for d in (m.get("devices") or {})),
            "clock_offset": asdict(off),
        }
        for e in m.get("errors") or []:
            meta["errors"].append({"node": node, **e} if isinstance(e, dict) else f"{node}: {e}")
    meta["started_at"] = min(starts) if starts else None
    meta["ended_at"] = max(ends) if ends else None
    meta["status"] = status
    meta["exit_code"] = exit_code
    meta["merge"] = {"reference": nodes[0], "threshold_s": threshold, "corrected": correct, "flags": flags,
                     "shards": [str(Path(r.path).resolve()) for r in runs]}
    writer.write_meta()
    return MergeResult(Path(out), nodes, offsets, flags, total_steps, total_samples)


def describe(result: MergeResult) -> str:
    """A few lines for the CLI."""
    lines = [f"merged {len(result.nodes)} node(s) into {result.out}: {result.samples} samples, {result.steps} steps"]
    for node, off in result.offsets.items():
        if off.method == "reference":
            lines.append(f"  {node}: clock reference")
        elif off.method == "none":
            lines.append(f"  {node}: clock offset unknown")
        else:
            lines.append(f"  {node}: clock offset {off.offset_s:+.3f} s +/- {off.uncertainty_s:.3f} s ({off.method})"
                         + (", corrected" if off.corrected else ""))
    lines += [f"  ! {f}" for f in result.flags]
    return "\n".join(lines)


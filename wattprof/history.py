"""A history of runs: found under a directory (or listed), each summarised in a small file.

Each run gets ``summary.json`` when it is finalised (and whenever it is missing or older than the
run's ``meta.json``), so reading a thousand runs' summaries takes a fraction of a second instead of
a thousand reports. A run is keyed by its benchmark (tag ``benchmark=`` or else its name), its
tags and its start time. A corrupt or half-written run is skipped with a warning naming it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, WattprofError
from .run import META, Run, write_json_atomic

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
SUMMARY_VERSION = 2


@dataclass
class RunSummary:
    path: str
    id: str | None
    name: str
    benchmark: str
    tags: dict[str, str]
    status: str
    started_at: float | None
    ended_at: float | None
    duration_s: float
    energy_j: float | None
    energy_source: str
    boundary: str
    estimated: bool
    tokens: float | None
    j_per_token: float | None
    mean_power_w: float | None
    steps: int
    by_label: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the same per-label figures as a list of flat records (``{"label": ..., "energy_j": ...}``): the
    #: shape a query engine unnests (docs/fleet.md); ``by_label`` is the one Python code looks up
    labels: list[dict[str, Any]] = field(default_factory=list)
    #: runs with agent tasks (docs/agents.md): mean energy per task; None without tasks
    j_per_task: float | None = None
    version: int = SUMMARY_VERSION

    def metric(self, name: str, label: str | None = None) -> float | None:
        """A metric of the run (or of one label): ``j_per_token``, ``energy_j``, ``duration_s``, ..."""
        # getattr, not asdict(self): asdict deep-copies every label (nightly asks this 10^4+ times)
        v = self.by_label.get(label, {}).get(name) if label else getattr(self, name, None)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


METRICS = ("j_per_token", "energy_j", "duration_s", "mean_power_w", "j_per_step", "j_per_task")


def summarize(run: Run) -> RunSummary:
    from .reports.build import build_report

    r = build_report(run, bottlenecks=True, timeline_points=2)
    tags = {str(k): str(v) for k, v in (run.meta.get("tags") or {}).items()}
    by_label = {
        k: {"energy_j": v.energy_j, "j_per_token": v.j_per_token, "tokens": v.tokens, "duration_s": v.duration_s,
            "steps": v.steps, "mean_power_w": v.mean_power_w,
            "j_per_step": v.energy_j / v.steps if v.steps and v.energy_j is not None else None,
            "verdict": v.bottleneck.verdict if v.bottleneck else None,
            "modifiers": list(v.bottleneck.modifiers) if v.bottleneck else []}
        for k, v in r.by_label.items()
    }
    return RunSummary(
        path=str(run.path), id=run.meta.get("id"), name=run.name, benchmark=tags.get("benchmark", run.name),
        tags=tags, status=run.status, started_at=run.meta.get("started_at"), ended_at=run.meta.get("ended_at"),
        duration_s=r.duration_s, energy_j=r.energy_j, energy_source=r.energy_source, boundary=r.boundary,
        estimated=r.estimated, tokens=r.tokens, j_per_token=r.j_per_token,
        mean_power_w=r.energy_j / r.duration_s if r.duration_s > 0 and r.energy_j is not None else None,
        steps=r.steps, by_label=by_label,
        labels=[{"label": k, **v} for k, v in by_label.items()],
        j_per_task=sum(t.energy_j for t in r.tasks) / len(r.tasks) if r.tasks else None,
    )


def to_json(s: RunSummary) -> dict[str, Any]:
    """The stored form of a summary: the per-label figures once, as the flat ``labels`` records."""
    d = asdict(s)
    d.pop("by_label")
    return d


def from_json(d: dict[str, Any]) -> RunSummary:
    """A summary from its stored form (``by_label`` rebuilt from ``labels``)."""
    labels = d.get("labels") or []
    d["by_label"] = {str(rec["label"]): {k: v for k, v in rec.items() if k != "label"} for rec in labels}
    return RunSummary(**d)


def write_summary(run_dir: str | Path) -> RunSummary:
    """Compute and store ``summary.json`` of a run (called when a run is finalised)."""
    run = Run.open(run_dir)
    s = summarize(run)
    write_json_atomic(Path(run_dir) / SUMMARY, to_json(s))
    return s


def try_write_summary(run_dir: str | Path) -> None:
    """Write the summary after finalisation; a failure is logged, never fails the run itself."""
    try:
        write_summary(run_dir)
    except (WattprofError, OSError, ValueError) as e:
        log.warning("could not write %s in %s: %s (recomputed when needed)", SUMMARY, run_dir, e)


def load_summary(run_dir: str | Path, *, write: bool = True) -> RunSummary:
    """The run's summary: from ``summary.json`` when it is current, else recomputed (and stored)."""
    p = Path(run_dir)
    sp, mp = p / SUMMARY, p / META
    try:
        current = os.stat(sp).st_mtime_ns >= os.stat(mp).st_mtime_ns
    except OSError:
        current = False
    if current:
        try:
            with open(sp, "rb") as fh:
                d = json.loads(fh.read())
            if d.get("version") == SUMMARY_VERSION:
                d["path"] = str(p)
                return from_json(d)
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            pass  # recomputed below
    run = Run.open(p)
    s = summarize(run)
    if write and os.access(p, os.W_OK) and run.status != "unfinished":
        try:
            write_json_atomic(sp, to_json(s))
        except OSError as e:
            log.info("could not store %s: %s", sp, e)
    return s


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories: each path is a run, or a directory searched (recursively) for runs."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError("no such file or directory", path=str(p))
        if (p / META).is_file():
            out.append(p)
            continue
        if not p.is_dir():
            raise InputError("not a run directory or a directory of runs", path=str(p))
        out.extend(sorted(_walk_runs(p)))
    return out


def _walk_runs(root: Path) -> list[Path]:
    """Run directories under ``root``; a run's own folder is not searched further (its samples can
    be large, and a run holds no runs)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if META in filenames:
            found.append(Path(dirpath))
            dirnames.clear()
        else:
            dirnames.sort()
    return found


def load_history(paths: list[str | Path], *, warnings: list[str] | None = None) -> list[RunSummary]:
    """Summaries of every run found; a run that cannot be read is skipped with a warning naming it."""
    found = []
    for run_dir in find_runs(paths):
        try:
            s = load_summary(run_dir)
        except (WattprofError, OSError, ValueError, KeyError) as e:
            msg = f"skipped {run_dir}: {e}"
            log.warning(msg)
            if warnings is not None:
                warnings.append(msg)
            continue
        if s.status == "unfinished":
            msg = f"skipped {run_dir}: the run never finished (half-written)"
            if warnings is not None:
                warnings.append(msg)
            continue
        found.append(s)
    return sorted(found, key=lambda s: (s.benchmark, s.started_at or 0.0))

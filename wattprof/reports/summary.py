"""A run's summary: the few figures a history of runs is judged on (nightly, compare, a fleet's
query engine), beside the report model it is made from.

:func:`summarize` builds it from a run's report; the stored form (``summary.json``, version 2,
docs/fleet.md) is :func:`to_json` / :func:`from_json`. :func:`load_summary` and
:func:`load_history` give a run's (or a history's) summaries: the stored ones when they are
current (:mod:`wattprof.history` finds runs and reads and writes the files), else recomputed from
the run and stored.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import history
from ..errors import WattprofError
from ..history import SUMMARY, SUMMARY_VERSION

if TYPE_CHECKING:
    from ..run import Run

log = logging.getLogger(__name__)

#: the metrics a summary can be judged on (``wattprof nightly --metric``)
METRICS = ("j_per_token", "energy_j", "duration_s", "mean_power_w", "j_per_step", "j_per_task")


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


def summarize(run: Run) -> RunSummary:
    """The summary of ``run``, from its report (bottleneck verdicts included, a 2-point timeline)."""
    from .build import build_report

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
    """A summary from its stored form (``by_label`` rebuilt from ``labels``); ``d`` is not changed."""
    by_label = {}
    for rec in d.get("labels") or ():
        figures = dict(rec)
        by_label[str(figures.pop("label"))] = figures
    return RunSummary(**d, by_label=by_label)


def write_summary(run_dir: str | Path) -> RunSummary:
    """Compute and store ``summary.json`` of a run (called when a run is finalised)."""
    from ..run import Run

    s = summarize(Run.open(run_dir))
    history.store_summary(Path(run_dir), to_json(s))
    return s


def try_write_summary(run_dir: str | Path) -> None:
    """Write the summary after finalisation; a failure is logged, never fails the run itself."""
    try:
        write_summary(run_dir)
    except (WattprofError, OSError, ValueError) as e:
        log.warning("could not write %s in %s: %s (recomputed when needed)", SUMMARY, run_dir, e)


def _recompute(run_dir: Path, *, write: bool) -> RunSummary:
    from ..run import Run

    run = Run.open(run_dir)
    s = summarize(run)
    if write and run.status != "unfinished":
        history.store_summary_if_possible(run_dir, to_json(s))
    return s


def _from_stored(d: dict[str, Any]) -> RunSummary | None:
    try:
        return from_json(d)
    except (TypeError, KeyError, AttributeError, ValueError):
        return None  # a damaged summary.json: recomputed


def load_summary(run_dir: str | Path, *, write: bool = True) -> RunSummary:
    """The run's summary: from ``summary.json`` when it is current, else recomputed (and stored)."""
    p = Path(run_dir)
    d = history.read_summary(p)
    s = _from_stored(d) if d is not None else None
    return s if s is not None else _recompute(p, write=write)


def load_history(paths: list[str | Path], *, warnings: list[str] | None = None,
                 cache: bool = True) -> list[RunSummary]:
    """Summaries of every run found; a run that cannot be read is skipped with a warning naming it.
    Current stored summaries come through the history's cache (:func:`wattprof.history.read_summaries`;
    ``cache=False`` reads every ``summary.json``)."""
    found = []
    for run_dir, d in history.read_summaries(paths, cache=cache):
        try:
            s = _from_stored(d) if d is not None else None
            if s is None:
                s = _recompute(Path(run_dir), write=True)
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

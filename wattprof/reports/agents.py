"""The report's agent sections: ``tasks``, ``by_model`` and their summary (docs/agents.md).

Built from steps that came from OpenTelemetry GenAI spans (``call`` = llm/tool, ``task_id``) by
:func:`wattprof.analysis.attribution.agent_energy`; empty for other runs.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..analysis import attribution
from ..analysis.energy import EnergyCurve
from .model import AgentsSummary, ModelReport, TaskReport

if TYPE_CHECKING:
    from ..analysis.carbon import CarbonContext


def _semconv(meta: dict[str, Any], events: pd.DataFrame) -> str | None:
    for src in (meta.get("sources") or {}).values():
        if src.get("semconv"):
            return str(src["semconv"])
    for v in _receiver_events(events).get("semconv", pd.Series(dtype=object)).dropna():
        return str(v)
    return None


def _receiver_events(events: pd.DataFrame) -> pd.DataFrame:
    if events.empty or "kind" not in events.columns:
        return events.iloc[0:0]
    return events[events["kind"] == "otlp_receiver"]


def receiver_flags(events: pd.DataFrame) -> list[str]:
    """What the live OTLP receiver said: its summary when spans were rejected, the mapping's flags."""
    out: list[str] = []
    ev = _receiver_events(events)
    for _, e in ev.iterrows():
        if "rejected" in str(e["message"]):
            out.append(str(e["message"]))
        flags = e.get("flags") if "flags" in ev.columns else None
        if isinstance(flags, list):
            out += [str(f) for f in flags]
    return out


def agent_sections(steps: pd.DataFrame, curves: list[EnergyCurve], meta: dict[str, Any],
                   carbon: CarbonContext | None = None, events: pd.DataFrame | None = None) -> tuple[list[TaskReport], dict[str, ModelReport],
                                                                    AgentsSummary | None]:
    a = attribution.agent_energy(steps, curves)
    if a is None:
        return [], {}, None
    co2 = None
    if carbon is not None:
        from ..analysis.carbon import co2_g

        co2 = (lambda j: co2_g(j, carbon)), carbon.intensity.location
    tasks = []
    for t in a.tasks:
        d = asdict(t)
        tasks.append(TaskReport(**d, g_co2e=co2[0](t.energy_j) if co2 else None, co2_location=co2[1] if co2 else None))
    models = {k: ModelReport(**asdict(v)) for k, v in a.by_model.items()}
    ev = events if events is not None else pd.DataFrame()
    summary = AgentsSummary(rule=a.rule, semconv=_semconv(meta, ev), tasks=len(tasks), energy_j=a.union_j,
                            distribution_j=attribution.distribution([t.energy_j for t in a.tasks]),
                            costliest_calls=a.costliest_calls, flags=a.flags + receiver_flags(ev))
    return tasks, models, summary

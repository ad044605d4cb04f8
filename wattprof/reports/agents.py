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


def _semconv(meta: dict[str, Any]) -> str | None:
    for src in (meta.get("sources") or {}).values():
        if src.get("semconv"):
            return str(src["semconv"])
    return None


def agent_sections(steps: pd.DataFrame, curves: list[EnergyCurve], meta: dict[str, Any],
                   carbon: CarbonContext | None = None) -> tuple[list[TaskReport], dict[str, ModelReport],
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
    summary = AgentsSummary(rule=a.rule, semconv=_semconv(meta), tasks=len(tasks), energy_j=a.union_j,
                            distribution_j=attribution.distribution([t.energy_j for t in a.tasks]),
                            costliest_calls=a.costliest_calls, flags=a.flags)
    return tasks, models, summary

"""JSON renderer: the Report as a JSON document (keys: docs/report-json.md)."""

from __future__ import annotations

import json
import math
from typing import Any

from .model import Report


def _clean(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    return o


def render(report: Report) -> str:
    doc = report.to_dict()
    for lr in (doc.get("by_label") or {}).values():  # J/step in every format (energy / steps)
        if isinstance(lr, dict) and "j_per_step" not in lr:
            steps = lr.get("steps")
            lr["j_per_step"] = lr["energy_j"] / steps if steps and lr["energy_j"] is not None else None
    return json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n"

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
    return json.dumps(_clean(report.to_dict()), indent=2, allow_nan=False) + "\n"

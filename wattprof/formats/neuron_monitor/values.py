"""Tolerant accessors of a neuron-monitor report's JSON: a missing or mistyped value is left out
(NaN, ``{}``, ``[]``, None), never an exception."""

from __future__ import annotations

import math
from typing import Any


def num(v: Any) -> float:
    """A JSON number as a finite float; NaN for null, strings, booleans, NaN/Infinity, integers
    too large for a float and the rest."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    try:
        f = float(v)
    except OverflowError:
        return math.nan
    return f if math.isfinite(f) else math.nan


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else []


def as_dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def int_key(k: Any) -> int | None:
    try:
        return int(k)
    except (TypeError, ValueError, OverflowError):
        return None


def group_error(group: Any) -> str:
    e = group.get("error") if isinstance(group, dict) else None
    return e.strip() if isinstance(e, str) else ""


def metric_group(report: Any, name: str) -> dict:
    """A metric group, or {} when it is missing or carries an error (its values are not data)."""
    g = as_dict(as_dict(report).get(name))
    return {} if group_error(g) else g

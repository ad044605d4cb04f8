"""What the Prometheus exporters share: the metric prefix, label names, the lazy client import."""

from __future__ import annotations

import re
from typing import Any

from ...errors import WattprofError

PREFIX = "wattprof_"
_LABEL_OK = re.compile(r"[^a-zA-Z0-9_]")
RESERVED_LABELS = frozenset({"run", "id", "device", "label", "source", "status", "boundary", "energy_source"})


def prometheus_core() -> Any:
    try:
        import prometheus_client  # noqa: F401
        from prometheus_client import core
    except ImportError:
        raise WattprofError("prometheus_client is not installed (pip install 'wattprof[prometheus]')") from None
    return core


def label_name(key: str) -> str:
    """A run tag key as a Prometheus label name."""
    name = _LABEL_OK.sub("_", str(key))
    if not name or name[0].isdigit():
        name = "_" + name
    if name.startswith("__"):
        name = "tag" + name
    return name

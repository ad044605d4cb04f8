"""Data shipped with wattprof: the H100 demo trace and its step log (real capture, see README.md here)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    return Path(str(files(__name__).joinpath(name)))

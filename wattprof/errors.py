"""wattprof's error hierarchy. Vendor errors are translated at the edges into these types.

Messages are one line, written for the user: what was wrong, where, and what was expected.
"""

from __future__ import annotations


class WattprofError(Exception):
    """Base class of every error wattprof raises on purpose."""


class InputError(WattprofError):
    """A user's input (file, option, log line) is not what was expected. CLI exit status 2."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class CollectorError(WattprofError):
    """A collector could not open or read its source."""


class DeviceLostError(CollectorError):
    """The device disappeared (e.g. NVML_ERROR_GPU_IS_LOST)."""


class RunError(WattprofError):
    """A run directory cannot be written or read."""

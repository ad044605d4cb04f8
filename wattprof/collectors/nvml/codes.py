"""NVML's numbers (return codes, field ids, clock and sensor ids) and the one translation of the
backend's ``NVMLError`` into wattprof's :class:`~wattprof.errors.CollectorError` /
:class:`~wattprof.errors.DeviceLostError`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import CollectorError, DeviceLostError

FI_POWER_AVERAGE = 185  # NVML_FI_DEV_POWER_AVERAGE
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
CLOCK_SM = 1  # NVML_CLOCK_SM
CLOCK_MEM = 2  # NVML_CLOCK_MEM
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
ERROR_NOT_SUPPORTED = 3
ERROR_INVALID_ARGUMENT = 2
ERROR_NO_PERMISSION = 4
ERROR_TIMEOUT = 10
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_NO_DATA = 21
ERROR_ARGUMENT_VERSION_MISMATCH = 25

F = TypeVar("F", bound=Callable[..., Any])


def nvml_errors(fn: F) -> F:
    """Translate the backend's NVMLError into wattprof's CollectorError / DeviceLostError."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except self.nvml.NVMLError as e:  # type: ignore[misc]
            code = getattr(e, "value", None)
            if code == ERROR_GPU_IS_LOST:
                raise DeviceLostError(f"NVML: GPU is lost ({e})") from None
            raise CollectorError(f"NVML error in {fn.__name__}: {e}") from None

    return wrapper  # type: ignore[return-value]


def error_name(lib: Any, code: int) -> str:
    return str(lib.NVMLError(code))


def as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


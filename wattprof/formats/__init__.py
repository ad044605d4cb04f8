"""Readers of external formats (recorded traces, tool outputs, user logs) into wattprof's schema.

Pure parsing: these modules know the schema and nothing of runs, collectors or reports. Every
malformed input raises :class:`wattprof.errors.InputError` naming the file, line and expectation.
"""

import math as _math
from typing import TypeGuard


def finite_number(v: object) -> TypeGuard[int | float]:
    """A JSON number that is finite as a float (booleans, and integers too large for a float, are not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return _math.isfinite(v)
    except OverflowError:
        return False

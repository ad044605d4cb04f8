"""Injectable clocks. The recorder, collectors and replay backends read time only through these,
so tests and the demo can run on scaled or manual time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock Unix seconds."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; used for intervals and scheduling."""

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ScaledClock:
    """Virtual time starting at ``start`` (Unix seconds) and running ``speed`` times faster
    than the real monotonic clock. Sleeping ``s`` virtual seconds sleeps ``s / speed`` real ones."""

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._m0 = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._m0) * self.speed

    def time(self) -> float:
        return self.start + self.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)


class ManualClock:
    """Time that moves only when told to (``set``/``advance``); ``sleep`` advances it."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start
        self._lock = threading.Lock()

    def set(self, t: float) -> None:
        with self._lock:
            self._t = t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))


SYSTEM_CLOCK = SystemClock()

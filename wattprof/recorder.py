"""The sampling loop: one thread that polls every collector at a fixed interval, stamps the
samples, isolates failures and flushes to the Run at least once a second.

Scheduling uses the clock's monotonic time (ticks at ``start + k * interval``; a late tick is
skipped rather than bunched), stamps use wall-clock time (what step logs use).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .collectors.base import Collector, RemoteCollector
from .errors import DeviceLostError, WattprofError
from .run import RunWriter, SampleStream

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
FLUSH_INTERVAL_S = 1.0


@dataclass
class _Slot:
    collector: Collector
    source: str
    stream: SampleStream
    buffer: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    disabled: bool = False


@dataclass
class LiveStats:
    """What the loop has seen so far (for live status lines and summaries)."""

    ticks: int = 0
    missed_ticks: int = 0
    samples: int = 0
    last: dict[str, dict[str, Any]] = field(default_factory=dict)


class Recorder:
    def __init__(self, writer: RunWriter, collectors: list[Collector], *, interval: float = DEFAULT_INTERVAL_S,
                 clock: Clock = SYSTEM_CLOCK, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.writer = writer
        self.collectors = collectors
        self.interval = float(interval)
        self.flush_interval = float(flush_interval)
        self.clock = clock
        self.stats = LiveStats()
        self._slots: list[_Slot] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._t_start: float | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, *, background: bool = True) -> None:
        """Open the collectors and start the sampling thread (``background=False``: the caller
        drives the loop with :meth:`sample_once` and :meth:`flush`, e.g. to replay a log)."""
        self._t_start = self.clock.time()
        for c in self.collectors:
            try:
                devices = c.open()
            except WattprofError as e:
                self.writer.event("collector_error", f"{c.name}: could not open: {e}", source=c.name)
                log.warning("collector %s could not open: %s", c.name, e)
                continue
            self.writer.add_devices(devices)
            source = self.writer.add_source(c.name, {"kind": "collector", "collector": c.name, "version": c.version,
                                                     "options": c.options(), "devices": sorted(devices)})
            stream = self.writer.sample_stream(source, list(c.metrics))
            self._slots.append(_Slot(c, source, stream))
        if background:
            self._thread = threading.Thread(target=self._loop, name="wattprof-recorder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the loop, flush everything, close collectors. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._fetch_remote()
        self.flush()
        for slot in self._slots:
            try:
                slot.collector.close()
            except WattprofError as e:
                self.writer.event("collector_error", f"{slot.collector.name}: close failed: {e}",
                                  source=slot.collector.name)

    # ---- the loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        clock = self.clock
        t0 = clock.monotonic()
        k = 0
        next_flush = t0 + self.flush_interval
        while not self._stop.is_set():
            self.sample_once()
            now = clock.monotonic()
            if now >= next_flush:
                self.flush()
                next_flush = now + self.flush_interval
            k += 1
            target = t0 + k * self.interval
            if now > target:  # late: skip the missed ticks instead of bunching samples
                missed = int((now - target) // self.interval) + 1
                self.stats.missed_ticks += missed
                k += missed
                target = t0 + k * self.interval
            self._wait(target - clock.monotonic())

    def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.clock is SYSTEM_CLOCK:
            self._stop.wait(seconds)  # wakes at once on stop()
        else:
            self.clock.sleep(seconds)

    def sample_once(self) -> None:
        """One tick: read every enabled collector once."""
        for slot in self._slots:
            if slot.disabled:
                continue
            try:
                rows = slot.collector.read()
            except DeviceLostError as e:
                slot.disabled = True
                self.writer.event("device_lost", f"{slot.collector.name}: {e}; collector stopped",
                                  source=slot.collector.name, t=self.clock.time())
                continue
            except Exception as e:  # noqa: BLE001 - isolate any collector (plugins too); recorded below
                slot.failures += 1
                if slot.failures <= 3 or slot.failures % 100 == 0:  # keep the event log readable
                    self.writer.event("collector_error", f"{slot.collector.name}: read failed "
                                      f"({slot.failures} so far): {type(e).__name__}: {e}",
                                      source=slot.collector.name,
                                      t=self.clock.time())
                continue
            now = self.clock.time()
            for r in rows:
                r.setdefault("t", now)
                self.stats.last[r["device"]] = r
            with self._lock:
                slot.buffer.extend(rows)
            self.stats.samples += len(rows)
        self.stats.ticks += 1

    def _fetch_remote(self) -> None:
        """Remote collectors (CloudWatch, ...) are read once, for the whole run, when it stops."""
        t1 = self.clock.time()
        for slot in self._slots:
            if not isinstance(slot.collector, RemoteCollector) or slot.disabled or self._t_start is None:
                continue
            try:
                rows = slot.collector.fetch(self._t_start, t1)
            except Exception as e:  # noqa: BLE001 - isolate any collector; recorded as an event
                self.writer.event("collector_error", f"{slot.collector.name}: fetch failed: {type(e).__name__}: {e}",
                                  source=slot.collector.name)
                continue
            with self._lock:
                slot.buffer.extend(rows)
            self.stats.samples += len(rows)
            slot.disabled = True  # fetched once

    def flush(self) -> None:
        """Append every buffered sample to the run (one record batch per source, fsynced)."""
        for slot in self._slots:
            with self._lock:
                rows, slot.buffer = slot.buffer, []
            if rows:
                slot.stream.append(rows)

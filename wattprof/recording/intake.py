"""What the sampling loop's reads give, into the Run: samples buffered per collector and flushed
(a disk that refuses them is recorded, the samples kept in memory, bounded), each reading's events
with their own kinds and its device updates merged into the run's devices, failures recorded
(rate-limited) without ever stopping the loop. The loop itself is :mod:`wattprof.recording.recorder`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..collectors.base import Collector, Event, Reading
from ..errors import DeviceLostError, RunError
from ..run import RunWriter, SampleStream

log = logging.getLogger(__name__)


def rate_limited(n: int) -> bool:
    """Record the 1st, 2nd, 3rd, then every 100th occurrence (keeps the event log readable)."""
    return n <= 3 or n % 100 == 0


@dataclass
class Slot:
    collector: Collector
    source: str
    stream: SampleStream
    buffer: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    disabled: bool = False
    closed: bool = False
    thread: threading.Thread | None = None
    #: perf_counter() when the running read began; None between reads
    reading_since: float | None = None
    stuck: bool = False  # the running read outlived read_timeout (recorded once per read)
    timeouts: int = 0
    storage_errors: int = 0
    ticks: int = 0
    missed: int = 0


@dataclass
class LiveStats:
    """What the loop has seen so far (for live status lines and summaries)."""

    ticks: int = 0
    missed_ticks: int = 0
    samples: int = 0
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: reads that outlived the read timeout / wall-clock jumps seen / failed writes of samples
    timeouts: int = 0
    clock_jumps: int = 0
    storage_errors: int = 0
    #: samples given up on because the disk refused them for too long (bounded memory)
    dropped_samples: int = 0


class Intake:
    """Takes the loop's readings into ``writer``; ``stats`` are the recorder's live stats and
    ``lock`` guards the slots' buffers and the stats."""

    def __init__(self, writer: RunWriter, stats: LiveStats) -> None:
        self.writer = writer
        self.stats = stats
        self.lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._storage_warned = False

    def take(self, slot: Slot, reading: Reading | None, err: Exception | None, now: float) -> None:
        """Handle one read's outcome: its events and device updates (taken from the collector's
        queue when the read failed), then the failure or the samples."""
        if reading is None:
            reading = self.drain(slot.collector)
        self.note_reading(slot, reading, now)
        if err is not None:
            if isinstance(err, DeviceLostError):
                slot.disabled = True
                self.event("device_lost", f"{slot.collector.name}: {err}; collector stopped",
                            source=slot.collector.name, t=now)
                return
            slot.failures += 1
            if rate_limited(slot.failures):
                self.event("collector_error", f"{slot.collector.name}: read failed "
                            f"({slot.failures} so far): {type(err).__name__}: {err}",
                            source=slot.collector.name, t=now)
            return
        self.keep(slot, reading.rows, stamp=now)

    def keep(self, slot: Slot, rows: list[dict[str, Any]], *, stamp: float | None) -> None:
        """Buffer a reading's samples for the next flush (those without ``t`` stamped ``stamp``)."""
        if stamp is not None:
            for r in rows:
                r.setdefault("t", stamp)
                self.stats.last[r["device"]] = r
        with self.lock:
            slot.buffer.extend(rows)
            self.stats.samples += len(rows)

    def drain(self, c: Collector) -> Reading:
        """What a collector queued beside a read that failed (or a fetch): its devices and events."""
        try:
            return Reading([], c.take_devices(), [Event.of(e) for e in c.take_events()])
        except Exception as e:  # noqa: BLE001 - isolate any collector; recorded
            return Reading([], {}, [Event("collector_error", f"taking its events failed: {type(e).__name__}: {e}")])

    def note_reading(self, slot: Slot, reading: Reading, now: float) -> None:
        """Record a reading's events (each with its own kind, device and time) and merge its device
        updates into the run's devices (a device known late, a period chosen at the fetch)."""
        name = slot.collector.name
        for ev in reading.events:
            extra = dict(ev.fields)
            if ev.device is not None:
                extra["device"] = ev.device
            message = ev.message if ev.message.startswith(name) else f"{name}: {ev.message}"
            self.event(ev.kind, message, source=name, t=now if ev.t is None else ev.t, **extra)
        if reading.devices:
            self.add_devices(slot, reading.devices)

    def add_devices(self, slot: Slot, devices: dict[str, dict[str, Any]]) -> None:
        try:
            self.writer.add_devices(devices)
            info = self.writer.meta["sources"].get(slot.source)
            if isinstance(info, dict):
                info["devices"] = sorted(set(info.get("devices") or []) | set(devices))
                self.writer.write_meta()
        except (RunError, OSError) as e:
            self.event("storage_error", f"{slot.collector.name}: devices not written: {e}",
                        source=slot.collector.name)

    def flush(self, slots: list[Slot]) -> None:
        """Append every buffered sample to the run (one record batch per source, fsynced).

        A write the disk refuses is recorded (``storage_error``) and retried at the next flush;
        it never stops sampling."""
        with self._flush_lock:
            for slot in slots:
                self._flush_slot(slot)

    def _flush_slot(self, slot: Slot) -> None:
        with self.lock:
            rows, slot.buffer = slot.buffer, []
        if not rows and not slot.stream.pending_rows:
            return
        dropped = slot.stream.dropped_rows
        seen = len(slot.stream.problems)
        try:
            slot.stream.append(rows)
        except RunError as e:
            slot.storage_errors += 1
            self.stats.storage_errors += 1
            if not self._storage_warned:
                self._storage_warned = True
                log.warning("%s; samples are kept in memory (bounded) and written when the disk takes "
                            "them again", e)
            if rate_limited(slot.storage_errors):
                self.event("storage_error", f"{e} ({slot.stream.pending_rows} samples waiting, "
                            f"{slot.stream.dropped_rows} dropped so far)", source=slot.source)
        self.stats.dropped_samples += slot.stream.dropped_rows - dropped
        for problem in slot.stream.problems[seen:]:  # the stream's file damaged from outside
            log.warning("%s", problem)
            self.event("storage_error", problem, source=slot.source)

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """Record an event; a disk that refuses it too must not stop sampling."""
        try:
            self.writer.event(kind, message, **extra)
        except (RunError, OSError) as e:
            log.debug("event not written (%s): %s: %s", e, kind, message)

"""The sampling loop: polls every collector at a fixed interval, stamps the samples, isolates
failures and flushes to the Run at least once a second.

Scheduling uses the clock's monotonic time (ticks at ``start + k * interval``; a late tick is
skipped rather than bunched), stamps use wall-clock time (what step logs use). A jump between the
two (the wall clock stepped by NTP or by hand, or the machine suspended) of more than
:data:`CLOCK_JUMP_S` is recorded as a ``clock_jump`` event.

Two ways to run:

- **one sampling thread per collector** (the default on the system clock): each collector is read
  by a thread of its own on the shared grid of ticks, and a monitor thread flushes once a second
  and watches the reads. A read that **hangs** therefore holds up only its own collector: the
  others stay on schedule. A read running longer than ``read_timeout`` is recorded
  (``collector_timeout``); the collector misses its ticks until the read returns
  (``collector_recovered``, its samples kept), then samples on the grid again. The common path
  costs no thread hand-off: a tick is one wake-up of the collector's own thread, as in a single
  loop (benchmarks/recorder.py).
- **one loop** reading the collectors in turn (an injected clock, e.g. the demo's scaled clock or
  a test's manual one, or ``read_timeout=None``): deterministic, and what :meth:`Recorder.sample_once`
  does when the caller drives the ticks (``start(background=False)``).

Each tick takes a :class:`~wattprof.collectors.base.Reading` from every collector
(``collect()``: samples, device updates, events; remote collectors once, at the stop, with
``collect_window()``). What a reading gives goes into the run through
:class:`~wattprof.recording.intake.Intake`: events with their own kinds, device updates merged into
the run's devices, samples buffered and flushed.

Failures are isolated per collector: an exception from ``read()`` is recorded (rate-limited
``collector_error`` events; the events the collector queued are recorded all the same) and the
collector is read again on the next tick; :class:`~wattprof.errors.DeviceLostError` stops it
(``device_lost``). The disk refusing samples (full, quota, file size limit) is recorded
(``storage_error``, and one warning on the log); the samples stay in memory, bounded, and are
written once the disk takes them again. Recording and the profiled program go on.
"""

from __future__ import annotations

import logging
import threading
import time

from ..clock import SYSTEM_CLOCK, Clock
from ..collectors.base import Collector, RemoteCollector
from ..errors import WattprofError
from ..options import DEFAULT_INTERVAL_S
from ..run import RunWriter
from .intake import Intake, LiveStats, Slot, rate_limited

__all__ = ["AUTO", "CLOCK_JUMP_S", "DEFAULT_INTERVAL_S", "FLUSH_INTERVAL_S", "READ_TIMEOUT_S", "LiveStats", "Recorder"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
#: A change of (wall clock - monotonic clock) larger than this between two checks is a clock jump.
CLOCK_JUMP_S = 1.0
#: Default ``read_timeout``: a read running longer than this (and than two intervals) is recorded
#: as stuck. Local collectors answer in milliseconds (NVML ~3 ms per GPU on an H100).
READ_TIMEOUT_S = 1.0
#: ``read_timeout="auto"``: threads per collector with :data:`READ_TIMEOUT_S` on the system clock,
#: one loop on an injected clock.
AUTO = "auto"


class Recorder:
    """The sampling loop over ``collectors``, writing to ``writer``.

    ``read_timeout``: seconds after which a running read is recorded as stuck; with it, each
    collector samples in a thread of its own (a hung read holds up only its collector).
    ``"auto"`` (default): ``max(READ_TIMEOUT_S, 2 * interval)`` on the system clock; on an
    injected clock, or with None, one loop reads the collectors in turn."""

    def __init__(self, writer: RunWriter, collectors: list[Collector], *, interval: float = DEFAULT_INTERVAL_S,
                 clock: Clock = SYSTEM_CLOCK, flush_interval: float = FLUSH_INTERVAL_S,
                 read_timeout: float | str | None = AUTO) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.writer = writer
        self.collectors = collectors
        self.interval = float(interval)
        self.flush_interval = float(flush_interval)
        self.clock = clock
        if read_timeout == AUTO:
            read_timeout = max(READ_TIMEOUT_S, 2 * self.interval) if clock is SYSTEM_CLOCK else None
        self.read_timeout: float | None = float(read_timeout) if read_timeout else None  # type: ignore[arg-type]
        self.stats = LiveStats()
        self._intake = Intake(writer, self.stats)
        self._event = self._intake.event
        self._take = self._intake.take
        self._lock = self._intake.lock
        self._slots: list[Slot] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t_start: float | None = None
        self._clock_offset: float | None = None
        self._background = False
        self._stopped = False

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, *, background: bool = True) -> None:
        """Open the collectors and start sampling in the background (``background=False``: the
        caller drives the ticks with :meth:`sample_once` and :meth:`flush`, e.g. to replay a log)."""
        self._t_start = self.clock.time()
        for c in self.collectors:
            try:
                devices = c.open()
                if not isinstance(devices, dict):
                    raise TypeError(f"open() returned {type(devices).__name__}, expected a dict of devices")
                options = c.options()
            except Exception as e:  # noqa: BLE001 - isolate any collector (third-party plugins too)
                what = str(e) if isinstance(e, WattprofError) else f"{type(e).__name__}: {e}"
                self._event("collector_error", f"{c.name}: could not open: {what}", source=c.name)
                log.warning("collector %s could not open: %s", c.name, what)
                self._close_quietly(c)
                continue
            self.writer.add_devices(devices)
            source = self.writer.add_source(c.name, {"kind": "collector", "collector": c.name, "version": c.version,
                                                     "options": options, "devices": sorted(devices)})
            stream = self.writer.sample_stream(source, list(c.metrics))
            self._slots.append(Slot(c, source, stream))
        self._check_clock()
        if not background:
            return
        # The run's first edge: one reading before start() returns, so a step begun right after
        # it is inside the samples (the background ticks start one interval later).
        self._background = True
        self._edge_reads()
        if self.read_timeout is None:
            self._threads = [threading.Thread(target=self._loop, name="wattprof-recorder", daemon=True)]
        else:
            t0 = self.clock.monotonic()
            self._threads = [threading.Thread(target=self._monitor, name="wattprof-recorder", daemon=True)]
            for slot in self._slots:
                if isinstance(slot.collector, RemoteCollector):
                    continue  # read once, when the run stops
                slot.thread = threading.Thread(target=self._sample_slot, args=(slot, t0), daemon=True,
                                               name=f"wattprof-sample-{slot.source}")
                self._threads.append(slot.thread)
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop sampling, flush everything, close collectors. Safe to call twice.

        A read still running (a hung collector) gets up to ``read_timeout`` more to return; then
        its thread is left behind (a daemon), its collector is not closed (closing it under a
        running read is not safe), and the run goes on to finalise without it."""
        self._stop.set()
        if self._background and not self._stopped:
            # The run's last edge: a final reading after the last step ended, so its energy is
            # measured rather than extrapolated (and no step falls after the last sample). Taken
            # as soon as the healthy sampling threads have left (a hung one is not waited for).
            settle = time.perf_counter() + 2 * self.interval + 0.05
            for t in self._threads:
                t.join(max(settle - time.perf_counter(), 0.0) if self.read_timeout is not None else None)
            self._edge_reads()
        self._stopped = True
        deadline = time.perf_counter() + (self.read_timeout or 0.0)
        for t in self._threads:
            t.join(None if self.read_timeout is None else max(deadline - time.perf_counter(), 0.0))
        self._threads = [t for t in self._threads if t.is_alive()]
        self._watch()
        self._fetch_remote()
        self.flush()
        for slot in self._slots:
            if slot.closed:
                continue
            if slot.reading_since is not None:
                self._event("collector_error", f"{slot.collector.name}: a read was still running when the run "
                            "stopped; the collector was left open", source=slot.collector.name)
                continue
            slot.closed = True
            try:
                slot.collector.close()
            except Exception as e:  # noqa: BLE001 - isolate any collector (third-party plugins too)
                what = str(e) if isinstance(e, WattprofError) else f"{type(e).__name__}: {e}"
                self._event("collector_error", f"{slot.collector.name}: close failed: {what}",
                            source=slot.collector.name)

    # ---- run edges --------------------------------------------------------------------------------
    def _edge_reads(self) -> None:
        """Read every local collector once, now (the start and the stop of the run).

        On one loop (an injected clock) this is a plain tick. With threads, each read runs in a
        helper thread joined for at most ``read_timeout``: a read that hangs here is left running
        (recorded like any stuck read) and never holds up the run or the user's program."""
        slots = [s for s in self._slots if not s.disabled and s.reading_since is None
                 and not isinstance(s.collector, RemoteCollector)]
        if not slots:
            return
        if self.read_timeout is None:
            self.sample_once()
            return
        helpers = [threading.Thread(target=self._read, args=(s,), daemon=True, name=f"wattprof-edge-{s.source}")
                   for s in slots]
        for h in helpers:
            h.start()
        deadline = time.perf_counter() + self.read_timeout
        for h in helpers:
            h.join(max(deadline - time.perf_counter(), 0.0))
        self._threads.extend(h for h in helpers if h.is_alive())

    @staticmethod
    def _close_quietly(c: Collector) -> None:
        """Release what a collector whose open() failed may hold (its error is already recorded)."""
        try:
            c.close()
        except Exception as e:  # noqa: BLE001 - isolate any collector
            log.debug("collector %s: close after a failed open: %s: %s", c.name, type(e).__name__, e)

    # ---- one thread per collector ---------------------------------------------------------------
    def _sample_slot(self, slot: Slot, t0: float) -> None:
        """Read one collector at ``t0 + k * interval`` (monotonic) until stopped."""
        clock = self.clock
        k = 1  # tick 0 was the start edge (start() read every collector once)
        self._wait(t0 + self.interval - clock.monotonic())
        while not self._stop.is_set() and not slot.disabled:
            self._read(slot)
            slot.ticks += 1
            if slot.ticks > self.stats.ticks:
                self.stats.ticks = slot.ticks
            k += 1
            now = clock.monotonic()
            target = t0 + k * self.interval
            if now > target:  # late: skip the missed ticks instead of bunching samples
                missed = int((now - target) // self.interval) + 1
                slot.missed += missed
                if slot.missed > self.stats.missed_ticks:
                    self.stats.missed_ticks = slot.missed
                k += missed
                target = t0 + k * self.interval
            self._wait(target - clock.monotonic())

    def _read(self, slot: Slot) -> None:
        slot.reading_since = began = time.perf_counter()
        try:
            reading, err = slot.collector.collect(), None
        except Exception as e:  # noqa: BLE001 - isolate any collector (plugins too); recorded
            reading, err = None, e
        now = self.clock.time()
        slot.reading_since = None
        took = time.perf_counter() - began
        if slot.stuck:
            slot.stuck = False
            self._event("collector_recovered", f"{slot.collector.name}: the stuck read returned after {took:.2f} s; "
                        "sampling again", source=slot.collector.name, t=now, took_s=took)
        elif self.read_timeout is not None and took > self.read_timeout:
            self._timed_out(slot, took, returned=True)
        self._take(slot, reading, err, now)

    def _timed_out(self, slot: Slot, took: float, *, returned: bool) -> None:
        slot.timeouts += 1
        with self._lock:
            self.stats.timeouts += 1
        if rate_limited(slot.timeouts):
            what = (f"a read took {took:.2f} s" if returned else
                    f"a read has been running for {took:.2f} s; its ticks are skipped until it returns")
            self._event("collector_timeout", f"{slot.collector.name}: {what} (read timeout {self.read_timeout:g} s, "
                        f"{slot.timeouts} so far); the other collectors stay on schedule",
                        source=slot.collector.name, t=self.clock.time(), took_s=took)

    def _monitor(self) -> None:
        """Flush once per flush interval; watch for stuck reads and clock jumps."""
        while not self._stop.is_set():
            self._wait(self.flush_interval)
            self._watch()
            self._check_clock()
            self.flush()

    def _watch(self) -> None:
        if self.read_timeout is None:
            return
        now = time.perf_counter()
        for slot in self._slots:
            since = slot.reading_since
            if since is not None and not slot.stuck and now - since > self.read_timeout:
                slot.stuck = True
                self._timed_out(slot, now - since, returned=False)

    # ---- one loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        clock = self.clock
        t0 = clock.monotonic()
        k = 1  # tick 0 was the start edge (start() read every collector once)
        next_flush = t0 + self.flush_interval
        self._wait(t0 + self.interval - clock.monotonic())
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
        """One tick: read every enabled collector once, in turn, in the calling thread."""
        self._check_clock()
        for slot in self._slots:
            if slot.disabled:
                continue
            try:
                reading = slot.collector.collect()
            except Exception as e:  # noqa: BLE001 - isolate any collector (plugins too); recorded
                self._take(slot, None, e, self.clock.time())
                continue
            self._take(slot, reading, None, self.clock.time())
        self.stats.ticks += 1

    # ---- shared -----------------------------------------------------------------------------------
    def _check_clock(self) -> None:
        """Record a jump of the wall clock against the monotonic one (larger than CLOCK_JUMP_S)."""
        wall, mono = self.clock.time(), self.clock.monotonic()
        offset = wall - mono
        prev, self._clock_offset = self._clock_offset, offset
        if prev is None or abs(offset - prev) <= CLOCK_JUMP_S:
            return
        jump = offset - prev
        self.stats.clock_jumps += 1
        self._event("clock_jump", f"the wall clock jumped {jump:+.3f} s against the monotonic clock (NTP step, "
                    "manual change or suspend): intervals were kept on the monotonic clock; sample and step "
                    "times after this point are shifted by the jump", t=wall, jump_s=jump)
        log.warning("the wall clock jumped %+.3f s during the run", jump)

    def _fetch_remote(self) -> None:
        """Remote collectors (CloudWatch, ...) are read once, for the whole run, when it stops; the
        devices they only know then (and the periods they chose) and their notes join the run."""
        t1 = self.clock.time()
        for slot in self._slots:
            if not isinstance(slot.collector, RemoteCollector) or slot.disabled or self._t_start is None:
                continue
            slot.disabled = True  # fetched once
            try:
                reading = slot.collector.collect_window(self._t_start, t1)
            except Exception as e:  # noqa: BLE001 - isolate any collector; recorded as an event
                self._intake.note_reading(slot, self._intake.drain(slot.collector), t1)
                self._event("collector_error", f"{slot.collector.name}: fetch failed: {type(e).__name__}: {e}",
                            source=slot.collector.name)
                continue
            self._intake.note_reading(slot, reading, t1)
            self._intake.keep(slot, reading.rows, stamp=None)

    def flush(self) -> None:
        """Append every buffered sample to the run (one record batch per source, fsynced).

        A write the disk refuses is recorded (``storage_error``) and retried at the next flush;
        it never stops sampling."""
        self._intake.flush(self._slots)

"""Live figures while a run records: a one-line status for ``wattprof record`` and energy so far
for training-framework callbacks.

:class:`LiveStatus` prints one line about once a second: elapsed time, power per device, energy
so far, steps per second and joules per token so far. On a terminal of known height the line lives
on the bottom row, outside a scroll region that holds everything else (as apt does): the profiled
command's output scrolls above it and is never glued onto it. On a terminal of unknown size it is
redrawn in place (``\\r`` and erase-to-end-of-line); elsewhere each refresh is a line of its own. What it shows
comes from ``stats_fn``, a callable returning a :class:`LiveSnapshot`; :class:`RecorderStats`
builds one from a :class:`~wattprof.recording.recorder.Recorder`'s :class:`~wattprof.recording.recorder.LiveStats`
(last reading per device) plus the steps that the profiled processes write into the run
directory (``steps-*.jsonl``, tailed incrementally: only new complete lines are read).

Energy so far, live: from each device's energy counter (its increments since the first reading),
else power integrated between refreshes (trapezoids, about 1 s apart: a display, not the report's
figure), by :class:`wattprof.analysis.integrate.EnergyAccumulator` (the Prometheus endpoint's too).
The boundary is the report's: measured accelerators, else the host.

:func:`energy_so_far` reads a run directory instead (what another process is recording: samples
are flushed at least once a second), with the report's own energy curves.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .analysis.integrate import EnergyAccumulator, latest_power
from .reports.format import fmt_j, fmt_jpt

if TYPE_CHECKING:
    from .recording.recorder import Recorder

#: Steps per second are counted over this window (seconds).
RATE_WINDOW_S = 5.0
#: Devices shown one by one; more are summed ("8 GPUs 2.41 kW").
MAX_DEVICES_SHOWN = 4


@dataclass
class LiveSnapshot:
    """What a live status line shows, as ``stats_fn`` returns it.

    ``power_w``: latest power per device (W; accelerators, and the host when it is the boundary);
    ``energy_j``: energy of the boundary so far (J; ``None`` before two readings); ``steps`` and
    ``tokens``: totals so far over every rank (``tokens`` ``None`` when no step carried any)."""

    elapsed_s: float
    power_w: dict[str, float] = field(default_factory=dict)
    energy_j: float | None = None
    steps: int = 0
    tokens: float | None = None
    #: serving engines' output token rate (collector prometheus), summed; None without one
    output_tokens_per_s: float | None = None


class StepTail:
    """Counts the steps and tokens in a run directory's ``steps-*.jsonl`` files, reading only what
    was appended since the last call (a partly written last line waits for the next call)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.steps = 0
        self.tokens = 0.0
        self.with_tokens = 0
        self._offsets: dict[Path, int] = {}

    def poll(self) -> tuple[int, float | None]:
        for f in sorted(self.run_dir.glob("steps-*.jsonl")):
            off = self._offsets.get(f, 0)
            try:
                with f.open("rb") as fh:
                    fh.seek(off)
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            for line in data[: end + 1].splitlines():
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if not isinstance(obj, dict):
                    continue
                self.steps += 1
                tok = obj.get("tokens")
                if isinstance(tok, int | float) and not isinstance(tok, bool):
                    self.tokens += float(tok)
                    self.with_tokens += 1
            self._offsets[f] = off + end + 1
        return self.steps, (self.tokens if self.with_tokens else None)


def _is_accel(device: str) -> bool:
    from .schema import is_accelerator

    return is_accelerator(device)


class RecorderStats:
    """``stats_fn`` for :class:`LiveStatus` from a running :class:`~wattprof.recording.recorder.Recorder`
    (in this process) and its run directory."""

    def __init__(self, recorder: Recorder, run_dir: str | Path | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.recorder = recorder
        self.tail = StepTail(run_dir if run_dir is not None else recorder.writer.path)
        self.clock = clock or recorder.clock.monotonic
        self.t0 = self.clock()
        self.energy = EnergyAccumulator()

    def __call__(self) -> LiveSnapshot:
        last = dict(self.recorder.stats.last)  # one C-level copy: the recorder thread may add devices
        self.energy.observe(last)
        energy = {dev: d.energy_j for dev, d in self.energy.state().items() if d.known}
        power = {dev: p[0] for dev, row in sorted(last.items()) if (p := latest_power(row)) is not None}
        accel = [d for d in power if _is_accel(d)] or [d for d in energy if _is_accel(d)]
        boundary = accel or list(power) or list(energy)
        steps, tokens = self.tail.poll()
        e_known = [energy[d] for d in boundary if d in energy]
        from .schema import device_kind

        serve = [float(v) for d, row in last.items() if device_kind(d) == "serve"
                 for v in [row.get("output_tokens_per_s")] if v is not None and v == v]
        return LiveSnapshot(
            elapsed_s=self.clock() - self.t0,
            power_w={d: power[d] for d in boundary if d in power},
            energy_j=float(sum(e_known)) if e_known else None,
            steps=steps, tokens=tokens, output_tokens_per_s=sum(serve) if serve else None,
        )


# ---- rendering -------------------------------------------------------------------------------


def fmt_power(w: float) -> str:
    return f"{w / 1e3:.2f} kW" if abs(w) >= 1e4 else f"{w:.0f} W"


def fmt_elapsed(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def fmt_j_per_token(v: float | None) -> str:
    return "- J/token" if v is None else fmt_jpt(v)


def render(snap: LiveSnapshot, steps_per_s: float | None) -> str:
    """The status line (no newline)."""
    parts = [f"wattprof {fmt_elapsed(snap.elapsed_s)}"]
    if snap.power_w:
        if len(snap.power_w) <= MAX_DEVICES_SHOWN:
            parts.append("  ".join(f"{d} {fmt_power(w)}" for d, w in snap.power_w.items()))
        else:
            parts.append(f"{len(snap.power_w)} devices {fmt_power(sum(snap.power_w.values()))}")
    else:
        parts.append("no power reading yet")
    parts.append(fmt_j(snap.energy_j) if snap.energy_j is not None else "- J")
    rate = f" {steps_per_s:.1f}/s" if steps_per_s is not None else ""
    parts.append(f"{snap.steps} step{'s' if snap.steps != 1 else ''}{rate}")
    if snap.tokens:
        jpt = snap.energy_j / snap.tokens if snap.energy_j is not None else None
        parts.append(fmt_j_per_token(jpt))
    if snap.output_tokens_per_s is not None:  # a serving engine's counters: J per output token right now
        tps = snap.output_tokens_per_s
        now = sum(snap.power_w.values()) / tps if tps > 0 and snap.power_w else None
        parts.append(f"serving {tps:.0f} tok/s " + fmt_j_per_token(now).replace("/token", "/output token"))
    return " | ".join(parts)


class LiveStatus:
    """A status line refreshed every ``interval`` seconds from ``stats_fn()`` on ``out``.

    ``tty``: redraw in place (default: ``out.isatty()``); otherwise one line per refresh.
    ``start()`` / ``stop()`` run it on a daemon thread; ``refresh()`` draws once. ``stop()`` draws
    a last time and ends the line, so what follows starts on a line of its own."""

    def __init__(self, stats_fn: Callable[[], LiveSnapshot], out: IO[str] | None = None, interval: float = 1.0,
                 *, tty: bool | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.stats_fn = stats_fn
        self.out = out if out is not None else sys.stderr
        self.interval = float(interval)
        if tty is None:
            try:
                tty = bool(self.out.isatty())
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        #: rows of the terminal when the status line has the bottom row to itself (scroll region)
        self.rows = 0
        self.lines = 0
        self._history: deque[tuple[float, int]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def _width(self) -> int:
        try:
            cols = os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            cols = 0
        return cols if cols > 0 else 10_000  # a terminal of unknown size (a bare pty): do not cut

    def _rate(self, snap: LiveSnapshot) -> float | None:
        h = self._history
        h.append((snap.elapsed_s, snap.steps))
        while len(h) > 2 and h[-1][0] - h[1][0] >= RATE_WINDOW_S:
            h.popleft()
        (t0, n0), (t1, n1) = h[0], h[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 >= n0 else None

    def refresh(self) -> str:
        """Draw the line once; returns it."""
        try:
            snap = self.stats_fn()
        except Exception as e:  # noqa: BLE001 - a status line must never take the run down
            line = f"wattprof: live status unavailable ({type(e).__name__}: {e})"
        else:
            line = render(snap, self._rate(snap))
        with contextlib.suppress(OSError, ValueError):
            if self.tty:
                width = self._width()
                if len(line) >= width:
                    line = line[: max(width - 1, 10)]
                if self.rows:  # save cursor, bottom row, draw, restore: the command's text is untouched
                    self.out.write(f"\x1b7\x1b[{self.rows};1H\r{line}\x1b[K\x1b8")
                else:
                    self.out.write("\r" + line + "\x1b[K")
            else:
                self.out.write(line + "\n")
            self.out.flush()
            self._drawn = True
        self.lines += 1
        return line

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def _terminal_rows(self) -> int:
        try:
            return os.get_terminal_size(self.out.fileno()).lines
        except (OSError, ValueError, AttributeError):
            return 0

    def _reserve_bottom_row(self) -> None:
        """Keep the bottom row for the status: scroll region = the rows above it."""
        rows = self._terminal_rows()
        if not self.tty or rows < 3:
            return
        with contextlib.suppress(OSError, ValueError):
            # a fresh line first, so the region's last row is free; then the region, cursor kept
            self.out.write(f"\n\x1b[1A\x1b7\x1b[1;{rows - 1}r\x1b8")
            self.out.flush()
            self.rows = rows

    def _release_bottom_row(self) -> None:
        if not self.rows:
            return
        with contextlib.suppress(OSError, ValueError):
            self.out.write(f"\x1b7\x1b[{self.rows};1H\x1b[2K\x1b[r\x1b8")
            self.out.flush()
        self.rows = 0

    def start(self) -> LiveStatus:
        self._reserve_bottom_row()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="wattprof-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop refreshing; draw the final line and end it. Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.rows:  # the final line goes into the scrolled text, below the command's output
            self._release_bottom_row()
            with contextlib.suppress(OSError, ValueError):
                self.out.write("\r\x1b[K")
        self.refresh()
        if self.tty and self._drawn:
            with contextlib.suppress(OSError, ValueError):
                self.out.write("\n")
                self.out.flush()

    def __enter__(self) -> LiveStatus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_live_status(recorder: Recorder, run_dir: str | Path, stream: IO[str] | None = None, *,
                      interval: float = 1.0, tty: bool | None = None) -> LiveStatus:
    """Show the live status line of ``recorder`` (recording into ``run_dir``) on ``stream``
    (default stderr) until ``.stop()`` is called. For ``wattprof record``."""
    return LiveStatus(RecorderStats(recorder, run_dir), stream, interval, tty=tty).start()


# ---- energy so far, from a run directory ------------------------------------------------------


@dataclass(frozen=True)
class EnergySoFar:
    energy_j: float  # boundary energy from the first to the last flushed sample
    t_first: float  # time of the first sample used (Unix seconds)
    t_last: float  # time of the last sample used (Unix seconds)
    devices: list[str]


def energy_so_far(run_dir: str | Path) -> EnergySoFar | None:
    """Energy recorded so far in ``run_dir`` (possibly still recording), over the report's boundary
    (measured accelerators, else estimated ones, else the host); ``None`` before any device has
    two samples. Samples are flushed at least once a second, so this lags by up to a second."""
    from . import schema
    from .analysis import energy as energy_mod
    from .analysis.boundary import boundary
    from .errors import WattprofError
    from .run import Run

    try:
        samples = Run.open(run_dir).samples
        curves = energy_mod.curves(samples)
    except (WattprofError, OSError, ValueError):
        return None
    usable = {d: c for d, c in curves.items() if len(c.t) >= 2}
    chosen = {d: usable[d] for d in boundary(usable, schema.device_kind, lambda d: usable[d].source)}
    if not chosen:
        return None
    return EnergySoFar(float(sum(c.total_j for c in chosen.values())),
                       float(min(c.t_first for c in chosen.values())),
                       float(max(c.t_last for c in chosen.values())), sorted(chosen))

"""One recording, start to end: options in, a finalised run out.

:class:`RecordingSession` is the one place that does create the run -> choose the collectors ->
start the :class:`~wattprof.recording.recorder.Recorder` -> stop -> finalise -> write the run's summary.
``wattprof.profile()`` (in a thread of the profiled process, or in the sampler process of
:mod:`wattprof.recording.sampler`), ``wattprof record`` and the Hugging Face / Lightning callbacks (through
``profile()``) all record through it::

    from wattprof.options import RecordOptions
    from wattprof.recording.session import RecordingSession

    with RecordingSession(RecordOptions(out=Path("runs/x"), collectors=("host",))) as session:
        ...                                     # the recorded work
    run = session.result.open()                 # the finalised run (status "finished")

Measurement never breaks the recorded program: :meth:`RecordingSession.stop` does not raise when
the run cannot be finalised (the disk refused ``meta.json``): :attr:`SessionResult.error` says so
and the run reads as unfinished (``wattprof repair`` finalises it later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..collectors import base as collectors_base
from ..errors import WattprofError
from ..options import RecordOptions
from ..run import RunWriter, default_run_dir
from .recorder import LiveStats, Recorder

if TYPE_CHECKING:
    from ..analysed_run import AnalysedRun
    from ..collectors.base import Collector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionResult:
    """How a recording ended: the run directory, the status and exit code it was finalised with,
    and ``error`` when ``meta.json`` could not be written (the run then reads as unfinished)."""

    run_dir: Path
    status: str
    exit_code: int | None = None
    error: str | None = None

    @property
    def finalised(self) -> bool:
        return self.error is None

    def open(self) -> AnalysedRun:
        """The run, opened for reading and reporting."""
        from ..analysed_run import AnalysedRun

        return AnalysedRun.open(self.run_dir)


class RecordingSession:
    """Record one run with ``options``: :meth:`start`, the work, :meth:`stop` (or ``with``).

    ``clock``: the injectable clock (the recorder's, the collectors' and the run's times).
    ``collectors``: already-built collectors instead of resolving ``options.collectors`` (tests,
    plugins built by hand)."""

    def __init__(self, options: RecordOptions, *, clock: Clock = SYSTEM_CLOCK,
                 collectors: list[Collector] | None = None) -> None:
        self.options = options
        self.clock = clock
        self._collectors = collectors
        self.run_dir: Path = options.out if options.out is not None else default_run_dir(options.name)
        self.writer: RunWriter | None = None
        self.recorder: Recorder | None = None
        self.result: SessionResult | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self, *, background: bool = True) -> RecordingSession:
        """Choose the collectors (an unavailable one asked for is an :class:`InputError`, before
        anything is created), create the run and start sampling (``background=False``: the caller
        drives the ticks with ``session.recorder.sample_once()``, e.g. on a manual clock)."""
        if self.writer is not None:
            raise WattprofError("this recording session has already started")
        opts = self.options
        chosen = (self._collectors if self._collectors is not None
                  else collectors_base.resolve(opts.collectors, clock=self.clock))
        self.writer = RunWriter.create(self.run_dir, name=opts.name, tags=opts.tags,
                                       command=list(opts.command) if opts.command else None,
                                       interval_s=opts.interval_s, clock_time=self.clock.time())
        self.recorder = Recorder(self.writer, chosen, interval=opts.interval_s, clock=self.clock)
        self.recorder.start(background=background)
        return self

    def stop(self, status: str = "finished", exit_code: int | None = None, *, summary: bool = True
             ) -> SessionResult:
        """Stop sampling, finalise the run with ``status`` / ``exit_code`` and (``summary``) write
        its summary for history and nightly. Idempotent: a second call returns the first result."""
        if self.result is not None:
            return self.result
        if self.writer is None or self.recorder is None:
            raise WattprofError("this recording session was never started")
        self.recorder.stop()
        error = None
        try:
            self.writer.finalize(status=status, exit_code=exit_code, ended_at=self.clock.time())
        except WattprofError as e:  # meta.json could not be written: the run reads as unfinished
            error = str(e)
            log.warning("the run in %s could not be finalised: %s", self.run_dir, e)
        self.result = SessionResult(self.run_dir, status, exit_code, error)
        if summary and error is None:
            from ..reports.summary import try_write_summary

            try_write_summary(self.run_dir)
        return self.result

    def __enter__(self) -> RecordingSession:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.stop("interrupted")
        else:
            self.stop("failed")

    # ---- while recording --------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.writer is not None

    @property
    def run_id(self) -> str:
        return str(self._writer().meta["id"])

    @property
    def meta(self) -> dict[str, Any]:
        """The run's metadata as the writer holds it (devices appear once the collectors opened)."""
        return self._writer().meta

    @property
    def stats(self) -> LiveStats:
        """What the sampling loop has seen so far (live status lines, metrics)."""
        assert self.recorder is not None, "the session has not started"
        return self.recorder.stats

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """Record an event in the run (signals, a command not found, ...)."""
        self._writer().event(kind, message, **extra)

    def _writer(self) -> RunWriter:
        if self.writer is None:
            raise WattprofError("the recording session has not started")
        return self.writer

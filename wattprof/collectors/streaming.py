"""Collectors fed by a long-lived tool that pushes lines (``nvidia-smi -lms``, ``neuron-monitor``).

:class:`LineProcess` runs the command, reads its stdout line by line on a thread and restarts it
when it exits: after 0.5 s, doubling up to 30 s while it keeps dying (back to 0.5 s after a run of
10 s or more). :class:`StreamingCollector` is the base of such collectors: the line handler
:meth:`~StreamingCollector.push` es samples, ``read()`` returns those that arrived since the last
call whatever the recorder's interval, and everything that happens beside the samples is an
event (:meth:`~wattprof.collectors.base.Collector.emit`), never an exception from ``read()``:
an exit and its restart is a ``collector_restart`` event (each one, with the exit code and the
delay), a command that cannot be started again a ``collector_error``, a line the handler does not
understand a ``collector_bad_output``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import WattprofError
from .base import BAD_OUTPUT, COLLECTOR_ERROR, COLLECTOR_RESTART, Collector

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
#: A process that ran this long before exiting restarts the backoff from BACKOFF_START_S.
BACKOFF_RESET_AFTER_S = 10.0
#: close(): SIGTERM, then SIGKILL after this many seconds.
STOP_GRACE_S = 2.0

#: ``emit(kind, message, **fields)``: where a :class:`LineProcess` reports exits and restarts.
Emit = Callable[..., None]


def describe_exit(code: int | None) -> str:
    if code is None:
        return "code unknown"
    if code < 0:
        try:
            return f"code {code}, killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"code {code}"
    return f"code {code}"


def find_executable(name: str, *fallbacks: str) -> str | None:
    """``name`` as a path, or looked up on PATH, or the first existing fallback path."""
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for f in fallbacks:
        if os.path.isfile(f) and os.access(f, os.X_OK):
            return f
    return None


def _log_event(kind: str, message: str, **fields: Any) -> None:
    log.info("%s: %s", kind, message)


class LineProcess:
    """A long-lived command whose stdout is read line by line on a thread, restarted when it dies.

    ``on_line(line, t)`` gets each complete line (without the newline) and its arrival time on
    ``clock``. Exits, restarts and lines ``on_line`` refused go to ``emit(kind, message, **fields)``
    (a collector's :meth:`~wattprof.collectors.base.Collector.emit`). Lines of any length are fine
    (a text stream's ``readline`` has no limit).
    """

    def __init__(self, name: str, argv: Sequence[str], on_line: Callable[[str, float], None], *,
                 clock: Clock = SYSTEM_CLOCK, emit: Emit = _log_event, backoff_start_s: float = BACKOFF_START_S,
                 backoff_max_s: float = BACKOFF_MAX_S, reset_after_s: float = BACKOFF_RESET_AFTER_S,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.on_line = on_line
        self.clock = clock
        self.emit = emit
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self.reset_after_s = reset_after_s
        self.env = env
        self.starts = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None else None

    def start(self) -> None:
        """Spawn the command (an OSError here is the caller's: the collector cannot open)."""
        self._spawn()
        self._thread = threading.Thread(target=self._run, name=f"wattprof-{self.name}", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _stderr_tail()/close()
            try:
                self._proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                    self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                    encoding="utf-8", errors="replace", env=self.env, start_new_session=True)
            except OSError:
                stderr.close()
                self._proc = None
                raise
            self._stderr = stderr
            self.starts += 1

    def _stderr_tail(self) -> str:
        f = self._stderr
        if f is None:
            return ""
        try:
            f.seek(0)
            text = f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        finally:
            f.close()
            self._stderr = None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return (": " + " / ".join(lines[-3:]))[:400] if lines else ""

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = self.clock.time()
            if not line.endswith("\n"):
                break  # cut off: the process died mid-write
            try:
                self.on_line(line.rstrip("\r\n"), t)
            except (WattprofError, ValueError, KeyError, TypeError) as e:
                self.emit(BAD_OUTPUT, f"{self.name}: line not understood ({type(e).__name__}: {e})", t=t)
        proc.stdout.close()

    def _run(self) -> None:
        delay = self.backoff_start_s
        while True:
            proc = self._proc
            started = time.monotonic()
            code: int | None = None
            if proc is not None:
                self._pump(proc)
                code = proc.wait()
                why = f"{self.name} exited ({describe_exit(code)}{self._stderr_tail()})"
                if time.monotonic() - started >= self.reset_after_s:
                    delay = self.backoff_start_s
            else:
                why = f"{self.name} could not be restarted"
            if self._stop.is_set():
                return
            self.emit(COLLECTOR_RESTART, f"{why}; restarting in {delay:g} s", t=self.clock.time(),
                      exit_code=code, restart_in_s=delay, restarts=self.starts)
            if self._stop.wait(delay):
                return
            try:
                self._spawn()
            except OSError as e:
                self._proc = None
                self.emit(COLLECTOR_ERROR, f"{self.name} could not be started: {e}", t=self.clock.time())
            delay = min(delay * 2, self.backoff_max_s)

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop: SIGTERM, wait ``grace_s``, SIGKILL; join the reader. Safe to call twice."""
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=grace_s + 5)
            self._thread = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    """Signal the command and what it started (its own session: a wrapper script's children too,
    which would otherwise hold its stdout open)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)


class StreamingCollector(Collector):
    """Base of collectors fed by a :class:`LineProcess`: samples pushed by the line handler are
    returned by the next ``read()``; exits, restarts and bad lines are events.

    ``backoff_start_s`` / ``backoff_max_s``: the restart delays (class attributes; a test may
    shorten them)."""

    backoff_start_s: float = BACKOFF_START_S
    backoff_max_s: float = BACKOFF_MAX_S

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(clock=clock)
        self._proc: LineProcess | None = None
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start_process(self, name: str, argv: Sequence[str]) -> LineProcess:
        """Start ``argv`` with :meth:`on_line` as its line handler (OSError: it could not start)."""
        proc = LineProcess(name, argv, self.on_line, clock=self.clock, emit=self.emit,
                           backoff_start_s=self.backoff_start_s, backoff_max_s=self.backoff_max_s)
        proc.start()
        self._proc = proc
        return proc

    def on_line(self, line: str, t_arrival: float) -> None:
        """Handle one line of the process's output (subclasses): :meth:`push` its samples."""
        raise NotImplementedError

    def push(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def take_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def read(self) -> list[dict[str, Any]]:
        return self.take_rows()

    def stop_process(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None

    def close(self) -> None:
        self.stop_process()

"""The sampler as a process of its own, for ``wattprof.profile()`` on the system clock.

A sampling thread inside a CPU-bound Python training process costs that process far more than
the sampler's own CPU time: every GIL hand-off stalls the loop (measured here: +6 % on a pure
Python loop at 10 Hz, for ~0.1 % of a core of reads; benchmarks/overhead.py). So ``profile()``
starts this small process, which creates the run, drives the :class:`~wattprof.recording.recorder.Recorder`
and finalises the run; the profiled process only writes its step marks.

Protocol (JSON lines): the profiled process writes its :class:`~wattprof.options.RecordOptions`
as the first line on the sampler's stdin (nothing in argv: the options, tags included, are not
on every ``ps`` listing); the sampler prints ``{"ready": true, "id": ...}`` or ``{"error": CLASS,
"message": ...}`` on stdout; it finalises when a status line ``{"status": ..., "exit_code": ...}``
arrives on stdin, or when stdin closes without one (the profiled process died: status
``interrupted`` with an event saying so). It ignores SIGINT (a terminal's Ctrl-C goes to the whole
process group; the profiled process decides) and finalises on SIGTERM. The recording itself is a
:class:`~wattprof.recording.session.RecordingSession`, as everywhere else.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors

if TYPE_CHECKING:
    from ..options import RecordOptions


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..options import RecordOptions
    from .session import RecordingSession

    try:
        options = RecordOptions.from_json(sys.stdin.readline())
    except (ValueError, errors.WattprofError) as e:  # json.JSONDecodeError is a ValueError
        _say({"error": "WattprofError", "message": f"sampler process: bad options line: {e}"})
        sys.exit(1)
    try:
        session = RecordingSession(options).start()
    except errors.WattprofError as e:
        _say({"error": type(e).__name__, "message": str(e)})
        sys.exit(1)
    stopping = threading.Event()
    result: dict[str, Any] = {}

    def on_term(signum: int, frame: Any) -> None:
        result.setdefault("status", "interrupted")
        session.event("signal", "sampler received SIGTERM")
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)

    def read_stdin() -> None:
        line = sys.stdin.readline()
        if line.strip():
            result.update(json.loads(line))
        else:
            result.setdefault("status", "interrupted")
            session.event("profiled_process_gone", "the profiled process ended without closing its profile")
        stopping.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    _say({"ready": True, "id": session.run_id})
    stopping.wait()
    done = session.stop(result.get("status", "interrupted"), result.get("exit_code"))
    if done.error is not None:  # the profiled process finalises the run, or says it could not
        print(f"wattprof sampler: the run could not be finalised: {done.error}", file=sys.stderr, flush=True)
        sys.exit(1)
    with contextlib.suppress(BrokenPipeError):  # the profiled process may be gone
        _say({"done": True})


def _say(msg: dict[str, Any]) -> None:
    print(json.dumps(msg), flush=True)


class SamplerProcess:
    """The profiled process's handle on its sampler process."""

    def __init__(self, options: RecordOptions) -> None:
        self.options = options
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, argv list
            [sys.executable, "-m", "wattprof.recording.sampler"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=False,
        )
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(options.to_json() + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process died at start: said below
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            msg = json.loads(line) if line else {"error": "RunError", "message": "sampler process exited at start"}
        except json.JSONDecodeError:
            msg = {"error": "RunError", "message": f"sampler process said: {line.strip()}"}
        if "error" in msg:
            self.proc.wait()
            cls = getattr(errors, str(msg["error"]), errors.WattprofError)
            if not (isinstance(cls, type) and issubclass(cls, errors.WattprofError)):
                cls = errors.WattprofError
            raise cls(msg["message"])
        self.run_id: str = msg["id"]

    def stop(self, status: str, exit_code: int | None = None, timeout: float = 60.0, *, run_dir: Path | None = None
             ) -> str | None:
        """Ask the sampler to finalise the run with ``status``. Measurement never breaks the
        profiled program: when the sampler died (killed, crashed) or does not finish in time, the
        run is finalised from here (``run_dir``: compaction, status, an event and an error line
        saying what was lost) and a message is returned for one warning; never raises for it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"status": status, "exit_code": exit_code}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            said = self.proc.stdout.read()
        except (OSError, ValueError):
            said = ""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            problem = f"the sampler process did not finish within {timeout:g} s and was killed"
        else:
            rc = self.proc.returncode
            if rc == 0 and '"done"' in said:
                return None
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            problem = f"the sampler process {how}"
        run_dir = run_dir if run_dir is not None else self.options.out
        if run_dir is None:
            return f"wattprof: {problem}; the run may be unfinished"
        return _finalise_here(run_dir, status, exit_code, problem)


def _finalise_here(run_dir: Path, status: str, exit_code: int | None, problem: str) -> str:
    """Finalise the run from the profiled process after its sampler died; the message to warn with."""
    from ..repair import finalise_abandoned

    why = (f"{problem} before finalising the run; finalised by the profiled process: samples up to the "
           "sampler's last flush (at most ~1 s before it died) are kept, later ones were never taken")
    try:
        finalise_abandoned(run_dir, status=status, exit_code=exit_code, why=why)
    except errors.WattprofError as e:
        return f"wattprof: {problem}, and the run could not be finalised ({e}): it reads as unfinished"
    return f"wattprof: {why}"


if __name__ == "__main__":
    main()

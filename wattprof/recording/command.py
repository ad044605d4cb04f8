"""``wattprof record -- CMD``'s child: run the command inside a recording session, forward signals
to it, and turn how it ended into a run status and an exit status.

Exit statuses (the command's own, as a shell reports them): its exit code; 128+N if it was killed
by signal N; 127 if it was not found, 126 if it is not executable (nothing ran: the run is marked
failed). SIGINT, SIGTERM and SIGHUP received while it runs are recorded as events and forwarded to
it (a terminal's Ctrl-C already reached it); after ``grace`` seconds it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import ENV_RUN_DIR, ENV_RUN_ID
from .session import RecordingSession

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


@dataclass(frozen=True)
class CommandResult:
    """How the command ended: the run's ``status`` (finished, failed, interrupted), the exit
    status to pass on, and ``error`` (one line) when it could not be started at all."""

    status: str
    exit_code: int
    error: str | None = None

    @property
    def ran(self) -> bool:
        return self.error is None


def command_env(session: RecordingSession, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The command's environment: ``base`` (default ours) plus the variables through which its own
    ``wattprof.profile()`` / ``wattprof.step()`` join the session's run."""
    env = dict(os.environ if base is None else base)
    env[ENV_RUN_DIR] = str(Path(session.run_dir).resolve())
    env[ENV_RUN_ID] = session.run_id
    return env


def run_command(command: Sequence[str], session: RecordingSession, *, env: Mapping[str, str],
                grace: float) -> CommandResult:
    """Run ``command`` (an argv list, no shell) to its end while ``session`` records."""
    from .child import parent_death_signal

    try:
        # the child gets SIGTERM if this process is killed with SIGKILL (Linux; docs/reliability.md)
        proc = subprocess.Popen(list(command), env=dict(env),  # noqa: S603 - argv list, no shell
                                preexec_fn=parent_death_signal())  # noqa: PLW1509
    except FileNotFoundError:
        session.event("command_not_found", f"command not found: {command[0]}")
        return CommandResult("failed", EXIT_NOT_FOUND, f"command not found: {command[0]}")
    except PermissionError:
        session.event("command_not_executable", f"not executable: {command[0]}")
        return CommandResult("failed", EXIT_NOT_EXECUTABLE, f"permission denied: {command[0]}")
    forwarded = _forward_signals(proc, session, grace)
    try:
        code = proc.wait()
    finally:
        for sig, handler in forwarded.restore.items():
            signal.signal(sig, handler)
    rc = code if code >= 0 else 128 - code
    status = "interrupted" if forwarded.received else ("finished" if code == 0 else "failed")
    return CommandResult(status, rc)


def adopt_joined_identity(session: RecordingSession, *, name_given: bool) -> list[str]:
    """The command's own ``wattprof.profile(name, tags=...)`` names the run (the command line wins
    conflicts); returns the notes about conflicts (also recorded as events)."""
    from ..naming import joined_profiles, merge_identity

    inner = joined_profiles(session.run_dir)
    if not inner:
        return []
    meta = session.meta
    ident = merge_identity(meta["name"], meta.get("tags") or {}, name_given=name_given, inner=inner)
    meta["name"], meta["tags"] = ident.name, ident.tags
    for note in ident.notes:
        session.event("identity_conflict", note)
    return list(ident.notes)


@dataclass
class _Forwarding:
    received: list[int] = field(default_factory=list)
    restore: dict[int, Any] = field(default_factory=dict)


def _forward_signals(proc: subprocess.Popen, session: RecordingSession, grace: float) -> _Forwarding:
    state = _Forwarding()

    def kill_later() -> None:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            session.event("command_killed", f"command ignored the signal for {grace} s: SIGKILL sent")
            proc.kill()

    def handler(signum: int, frame: Any) -> None:
        state.received.append(signum)
        session.event("signal", f"received {signal.Signals(signum).name}, forwarded to the command")
        # A terminal's Ctrl-C already reached the command (same foreground process group).
        from_tty = signum == signal.SIGINT and _child_in_foreground_group()
        if not from_tty and proc.poll() is None:
            proc.send_signal(signum)
        if len(state.received) == 1:
            threading.Thread(target=kill_later, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        state.restore[sig] = signal.signal(sig, handler)
    return state


def _child_in_foreground_group() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False

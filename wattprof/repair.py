"""Runs left behind: is the process that records a run still alive, and finalising a run whose
recorder is gone (``wattprof repair RUN``).

A recording run's ``meta.json`` names its writer (``host.hostname``, ``host.pid``) and its
``started_at``. The recorder is *alive* when that host is this one and a process with that pid
exists and started no later than the run (pid reuse by a newer process reads as gone). On another
host nothing can be told: the recorder counts as alive (nothing is touched).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, RunError
from .run import META, RESERVE, JsonlAppender, Run, compact, write_json_atomic

#: slack between a process's start time and the run's ``started_at`` (clock resolution, NTP)
_START_SLACK_S = 5.0


def recorder_state(meta: dict) -> str:
    """``"alive"``, ``"gone"`` or ``"unknown"`` (another host) for a run whose status is
    ``recording``; ``"done"`` for any other status."""
    if meta.get("status") != "recording":
        return "done"
    host = meta.get("host") or {}
    pid = host.get("pid")
    if host.get("hostname") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
        return "unknown"
    import psutil

    try:
        proc = psutil.Process(pid)
        started = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return "gone"
    except (psutil.Error, OSError):
        return "alive"  # it exists (access denied): not ours to judge
    if proc.status() == psutil.STATUS_ZOMBIE:
        return "gone"
    t0 = meta.get("started_at")
    if isinstance(t0, (int, float)) and started > t0 + _START_SLACK_S:
        return "gone"  # the pid now belongs to a process started after the run
    return "alive"


def refuse_if_recording(path: Path, meta: dict, what: str) -> None:
    """:class:`InputError` when a live recorder owns the run at ``path`` (its ``meta.json`` is
    rewritten from memory when it finalises: anything added now would be lost)."""
    state = recorder_state(meta)
    if state in ("alive", "unknown"):
        host = meta.get("host") or {}
        where = f"pid {host.get('pid')} on {host.get('hostname')}"
        hint = ("" if state == "alive" else
                "; if that recorder is gone, run `wattprof repair --force RUN` on this run first")
        raise InputError(f"the run is still being recorded ({where}): {what} after it finishes, or into "
                         f"another run{hint}", path=str(path))


@dataclass
class RepairResult:
    path: Path
    status: str
    #: what was done, one line each
    actions: list[str] = field(default_factory=list)


def _stale_files(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name == RESERVE or (p.name.startswith(".") and p.name.endswith(".tmp"))]


def repair(run_dir: str | Path, *, force: bool = False, by: str = "wattprof repair") -> RepairResult:
    """Finalise a run whose recorder is gone (crashed, killed with SIGKILL, machine rebooted):
    compact its sample streams to Parquet (dropping a torn last chunk, said), remove the space set
    aside (``.reserve``) and half-written temporary files, and mark it ``interrupted`` with an
    event and an entry in ``errors`` saying what happened. A finalised run only gets its leftovers
    removed. Refused (:class:`InputError`) while the recorder is alive; a recorder on another host
    cannot be checked: refused unless ``force``."""
    path = Path(run_dir)
    meta = Run.read_meta(path)
    state = recorder_state(meta)
    if state == "alive" or (state == "unknown" and not force):
        refuse_if_recording(path, meta, "repair it")
    result = RepairResult(path=path, status=str(meta.get("status")))
    if state == "done":
        for p in _stale_files(path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                result.actions.append(f"removed {p.name}")
        return result
    why = (f"the recorder (pid {(meta.get('host') or {}).get('pid')} on {(meta.get('host') or {}).get('hostname')}) "
           f"was gone; finalised by `{by}`: data up to its last flush")
    result.actions.extend(finalise_abandoned(path, status="interrupted", exit_code=None, why=why))
    result.status = "interrupted"
    return result


def finalise_if_abandoned(run_dir: str | Path, *, by: str) -> RepairResult | None:
    """What a reader that may write (``wattprof report``) does first: a run still ``recording``
    whose recorder is gone on this host is finalised as :func:`repair` does (``by`` names the
    command in the run's errors); None, touching nothing, for a finished run, a live recorder or
    one on another host. A run directory the reader cannot write is left as it is (None)."""
    path = Path(run_dir)
    if recorder_state(Run.read_meta(path)) != "gone":
        return None
    if not os.access(path, os.W_OK):
        return None
    return repair(path, by=by)


def finalise_abandoned(path: Path, *, status: str, exit_code: int | None, why: str) -> list[str]:
    """Finalise the run at ``path`` in place of its writer, which is gone: compact the streams,
    remove leftovers, record ``why`` (an event ``repaired`` and a line in ``errors``), set the
    status and ``ended_at`` (the last sample). Returns what was done, one line each."""
    actions: list[str] = []
    problems: list[str] = []
    for p in _stale_files(path):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            actions.append(f"removed {p.name}")
    streams = sorted(path.glob("samples-*.arrows"))
    compact(path, errors=problems)
    if streams:
        actions.append(f"compacted {len(streams)} sample stream(s) to Parquet")
    run = Run.open(path)
    raw = Run.read_meta(path)
    t = run.samples["t"] if len(run.samples) else None
    ended = float(t.max()) if t is not None else raw.get("started_at")
    events = JsonlAppender(path / f"events-{os.getpid()}.jsonl", strict=False)
    try:
        events.append({"t": time.time(), "kind": "repaired", "message": why})
    finally:
        with contextlib.suppress(RunError):
            events.close()
    raw["status"] = status
    raw["exit_code"] = exit_code
    raw["ended_at"] = ended
    raw["errors"] = [*raw.get("errors", []), why, *problems]
    write_json_atomic(path / META, raw)
    actions.append(f"status -> {status} (ended at the last sample){'; ' if problems else ''}" + "; ".join(problems))
    return actions


__all__ = ["recorder_state", "refuse_if_recording", "repair", "finalise_if_abandoned", "finalise_abandoned",
           "RepairResult"]

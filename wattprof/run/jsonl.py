"""Append-only JSON lines (steps, events): one whole line per ``write``, one file per writing process."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import warnings as pywarnings
from pathlib import Path

from ..errors import RunError
from .durable import MAX_PENDING_BYTES, storage_error, undo_append, write_all


class JsonlAppender:
    """Append-only JSON lines; each line is written whole with one ``write`` (fsync on ``sync``/close).

    When the disk refuses a line (full, quota, file size limit), the partial bytes are cut off
    again, the line is kept in memory (up to :data:`MAX_PENDING_BYTES`) and written before the
    next one. ``strict`` (default): :meth:`append` then raises :class:`RunError`; otherwise it
    warns once (a ``RuntimeWarning``) and goes on (step marks in a training loop must
    never stop the loop)."""

    def __init__(self, path: Path, *, strict: bool = True) -> None:
        self.path = path
        self.strict = strict
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise storage_error(path, e, "lines") from None
        self._lock = threading.Lock()
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        #: lines given up on (over MAX_PENDING_BYTES while the disk refused them)
        self.dropped = 0
        self._warned = False

    def append(self, obj: dict) -> None:
        line = (json.dumps(obj, default=str, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise RunError(f"{self.path}: appended to after close")
            self._pending.append(line)
            self._pending_bytes += len(line)
            self._drain()

    def _drain(self) -> None:
        """Write the pending lines in order (lock held)."""
        assert self._fd is not None
        while self._pending:
            line = self._pending[0]
            try:
                write_all(self._fd, line)
            except OSError as e:
                undo_append(self._fd, getattr(e, "written", 0))
                while self._pending_bytes > MAX_PENDING_BYTES and len(self._pending) > 1:
                    self._pending_bytes -= len(self._pending.popleft())
                    self.dropped += 1
                err = storage_error(self.path, e, "lines")
                if self.strict:
                    raise err from None
                if not self._warned:  # once; a warning, so that a profiled program shows it too
                    self._warned = True
                    pywarnings.warn(f"wattprof: {err}; lines are kept in memory and written when it is "
                                    "possible again", RuntimeWarning, stacklevel=4)
                return
            self._pending.popleft()
            self._pending_bytes -= len(line)

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                if self._pending:
                    strict, self.strict = self.strict, True
                    try:
                        self._drain()
                    finally:
                        self.strict = strict
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
            except RunError:
                self.dropped += len(self._pending)
                self._pending.clear()
                if self.strict:
                    raise
            finally:
                fd, self._fd = self._fd, None
                os.close(fd)


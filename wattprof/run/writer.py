"""Writing a run directory: :class:`RunWriter` creates it (claiming ``meta.json`` exclusively),
registers devices and sources, hands out a :class:`SampleStream` per source and the process's
events file, and finalises it (streams compacted to Parquet, status and errors in ``meta.json``)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schema
from ..errors import RunError
from .durable import write_all, write_json_atomic, write_json_exclusive
from .jsonl import JsonlAppender
from .meta import META, new_meta, read_meta
from .stream import SampleStream, compact, write_parquet

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: Space a run sets aside while recording (``.reserve``), freed to finalise it on a full disk.
RESERVE = ".reserve"
RESERVE_BYTES = 64 * 1024

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """A string usable inside a file name (no separators, no leading dots)."""
    return _SAFE.sub("_", text).strip("._") or "x"


@dataclass
class RunWriter:
    """Writes one run directory. Owns ``meta.json`` (only the process that created the run does)."""

    path: Path
    meta: dict
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _streams: dict[str, SampleStream] = field(default_factory=dict, repr=False)
    _events: JsonlAppender | None = field(default=None, repr=False)
    #: what :meth:`finalize` could not write (also in ``meta["errors"]``)
    storage_errors: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def create(cls, path: str | Path, *, name: str | None = None, tags: dict[str, str] | None = None,
               command: list[str] | None = None, interval_s: float | None = None,
               clock_time: float | None = None) -> RunWriter:
        p = Path(path)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run directory {p}: {e.strerror or e}") from None
        now = time.time() if clock_time is None else clock_time
        meta = new_meta(name=name or p.name, started_at=now, tags=tags, command=command, interval_s=interval_s)
        w = cls(path=p, meta=meta)
        with w._lock:  # claims the directory: of two writers racing for it, exactly one wins
            write_json_exclusive(p / META, meta)
        return w

    def _reserve(self) -> None:
        """Set aside :data:`RESERVE_BYTES` on the run's file system (a hidden file, removed when
        the run is finalised) so that a disk filled during the run still takes the final
        ``meta.json``: the run's status and what went wrong are recorded. Done when the first
        sample stream opens (recording; imports write no stream). Best effort."""
        path = self.path / RESERVE
        if path.exists():
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                write_all(fd, bytes(RESERVE_BYTES))
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()

    @classmethod
    def open_existing(cls, path: str | Path) -> RunWriter:
        """Open a run to add data (``wattprof import`` on an existing run). The caller refuses a run
        still being recorded (:func:`wattprof.repair.refuse_if_recording`): its recorder rewrites
        ``meta.json`` when it stops."""
        p = Path(path)
        return cls(path=p, meta=read_meta(p))

    def write_meta(self) -> None:
        with self._lock:
            write_json_atomic(self.path / META, self.meta)

    def add_devices(self, devices: dict[str, dict]) -> None:
        for dev, info in devices.items():
            self.meta["devices"].setdefault(dev, {}).update(info)
        self.write_meta()

    def add_source(self, source: str, info: dict) -> str:
        """Register a data source (collector or import); returns the unique file-safe source key."""
        key = safe_name(source)
        n = 1
        while key in self.meta["sources"]:
            n += 1
            key = f"{safe_name(source)}-{n}"
        self.meta["sources"][key] = info
        self.write_meta()
        return key

    def sample_stream(self, source_key: str, metrics: list[str]) -> SampleStream:
        if not self._streams:
            self._reserve()
        s = SampleStream(self.path / f"samples-{source_key}.arrows", metrics)
        self._streams[source_key] = s
        return s

    def write_samples_frame(self, source_key: str, df: pd.DataFrame) -> None:
        """Write a whole samples frame for one source (imports, merge): straight to Parquet,
        atomically. The Arrow columns are made from the frame's own arrays (float64 columns are
        not copied; NaN is written as null), never from a copy of the frame."""
        import pyarrow as pa

        def floats(c: str) -> pa.Array:
            col = df[c]
            v = col.to_numpy() if col.dtype == "float64" else col.astype("float64").to_numpy()
            return pa.array(v, from_pandas=True)

        metrics = [c for c in df.columns if c in schema.METRICS]
        table = pa.table({schema.T: floats(schema.T), schema.DEVICE: pa.Array.from_pandas(df[schema.DEVICE]),
                          **{c: floats(c) for c in metrics}})
        write_parquet(table, self.path / f"samples-{source_key}.parquet")

    def events(self) -> JsonlAppender:
        """The events file of this process. Events are diagnostics: a disk that refuses them is
        logged once, never raised (signal handlers and the sampling loop write events)."""
        if self._events is None:
            self._events = JsonlAppender(self.path / f"events-{os.getpid()}.jsonl", strict=False)
        return self._events

    def event(self, kind: str, message: str, *, t: float | None = None, **extra: Any) -> None:
        self.events().append({"t": time.time() if t is None else t, "kind": kind, "message": message, **extra})

    def finalize(self, *, status: str, exit_code: int | None = None, ended_at: float | None = None) -> None:
        """Close streams, compact them to Parquet, and mark the run finished (or failed/interrupted).

        Best effort: a stream or Parquet file the disk refuses is reported (logged, listed in
        ``meta["errors"]`` and :attr:`storage_errors`) and left readable as it is (an Arrow stream
        stays in place when its Parquet file cannot be written). Raises :class:`RunError` only
        when ``meta.json`` itself cannot be written (the run then reads as unfinished)."""
        problems: list[str] = []
        for s in self._streams.values():
            try:
                s.close()
            except RunError as e:
                problems.append(f"{e} ({s.dropped_rows} samples lost)")
            problems.extend(p for p in s.problems if p not in problems)
        compact(self.path, errors=problems)
        if self._events is not None:
            try:
                self._events.close()
            except RunError as e:
                problems.append(str(e))
        for msg in problems:
            log.warning("%s", msg)
        self.storage_errors.extend(problems)
        with contextlib.suppress(OSError):  # the space set aside for this moment: the final meta.json
            (self.path / RESERVE).unlink()
        self.meta["status"] = status
        self.meta["exit_code"] = exit_code
        self.meta["ended_at"] = time.time() if ended_at is None else ended_at
        if problems:
            self.meta.setdefault("errors", []).extend(problems)
        self.write_meta()


def default_run_dir(name: str | None, base: str | Path | None = None) -> Path:
    """``$WATTPROF_DIR`` (or ``./wattprof-runs``) / ``<YYYYmmdd-HHMMSS>-<name>``, made unique."""
    root = Path(base or os.environ.get("WATTPROF_DIR") or "wattprof-runs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{stamp}-{safe_name(name or 'run')}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{safe_name(name or 'run')}-{n}"
    return candidate

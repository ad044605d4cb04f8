"""A Run is a directory on disk: written durably while recording, readable even if never finished.

Layout (format 1)::

    RUN/
      meta.json                      id, name, tags, command, host, devices, sources, status ...
                                     replaced atomically (write, fsync, rename)
      samples-<source>.arrows        Arrow IPC stream, one record batch per flush (append-only);
                                     a reader stops cleanly at a torn final batch
      samples-<source>.parquet       the same samples compacted when the run is finalised
      steps-<rank>-<pid>.jsonl       one step per line, one file per writing process
      events-<pid>.jsonl             collector errors, restarts, markers: one JSON object per line

Each writer (a recorder's collector, an import) owns its own files, so processes and ranks never
interleave half-written lines. Readers return pandas DataFrames.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
import uuid
import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import schema
from .errors import InputError, RunError
from .formats import finite_number as _finite

FORMAT = 1
META = "meta.json"
#: Compression of the live Arrow stream's buffers (a batch per second: ~3.5 B per stored value
#: instead of ~19 uncompressed, benchmarks/storage.py) and of the finalised Parquet files.
STREAM_COMPRESSION = "zstd"
PARQUET_COMPRESSION = "zstd"
#: Bytes of encoded samples (or JSON lines) a writer keeps in memory while the disk refuses them
#: (full, quota, file size limit); beyond this the oldest are dropped (and counted).
MAX_PENDING_BYTES = 64 * 2**20
#: Space a run sets aside while recording (``.reserve``), freed to finalise it on a full disk.
RESERVE = ".reserve"
RESERVE_BYTES = 64 * 1024

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pandas is imported by the readers only: the recording path needs pyarrow alone
    import pandas as pd
    import pyarrow as pa

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """A string usable inside a file name (no separators, no leading dots)."""
    return _SAFE.sub("_", text).strip("._") or "x"


_STORAGE_REASONS = {
    errno.ENOSPC: "no space left on the device (ENOSPC)",
    errno.EFBIG: "the file size limit was reached (EFBIG)",
    errno.EDQUOT: "the disk quota is exceeded (EDQUOT)",
}


def storage_error(path: Path | str, e: OSError, what: str) -> RunError:
    """A RunError that says what could not be written where, and why (disk full, size limit...)."""
    reason = _STORAGE_REASONS.get(e.errno or 0, e.strerror or str(e))
    err = RunError(f"{path}: cannot write {what}: {reason}")
    err.errno = e.errno  # type: ignore[attr-defined]
    return err


def _write_json_synced(tmp: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to the new file ``tmp`` and fsync it. Created with mode 0666 so that
    the kernel applies the process umask (no ``os.umask`` round trip, which would briefly set a
    umask of 0 for every thread)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON: write a temporary file, fsync, rename.

    The temporary file is created with mode 0666 so that the kernel applies the process umask
    (no ``os.umask`` round trip, which would briefly set a umask of 0 for every thread).
    Raises :class:`RunError` when the file cannot be written (disk full, ...)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_json_synced(tmp, obj)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise storage_error(path, e, "JSON") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_exclusive(path: Path, obj: Any) -> None:
    """Create ``path`` with ``obj`` as JSON, atomically and only if it does not exist: the file is
    written and fsynced under a temporary name, then hard-linked to ``path`` (``link(2)`` fails
    when ``path`` exists, so of two writers racing for it exactly one wins). :class:`RunError`
    when ``path`` exists or cannot be written."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_json_synced(tmp, obj)
        os.link(tmp, path)
    except FileExistsError:
        raise RunError(f"{path.parent} already holds a run ({path.name} exists); choose another --out") from None
    except OSError as e:
        raise storage_error(path, e, "JSON") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


#: Argument names whose values are secrets: ``--password=x``, ``--api-token x``, ``AWS_SECRET_KEY=x``.
_SECRET_NAME = re.compile(r"(passw(or)?d|secret|credential|(^|[-_])(api[-_]?|access[-_]?|auth[-_]?)?(token|key)$)", re.I)
REDACTED = "***"


def redact_command(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret-looking arguments replaced by ``***``: ``--password=x``,
    ``--token x`` (the next argument), ``API_KEY=x``. What is recorded in ``meta.json`` (and so
    in every report) is the redacted command; the program itself gets the real one."""
    out: list[str] = []
    hide_next = False
    for a in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _value = a.partition("=")
        bare = name.lstrip("-")
        if eq and bare and _SECRET_NAME.search(bare) and " " not in name:
            out.append(f"{name}={REDACTED}")
        elif name.startswith("-") and not eq and bare and _SECRET_NAME.search(bare):
            out.append(a)
            hide_next = True
        else:
            out.append(a)
    return out


def _write_all(fd: int, data: bytes | memoryview) -> int:
    """``os.write`` until all of ``data`` is written; returns the byte count. On an error the
    bytes already written are reported in the exception's ``written`` attribute."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        try:
            n = os.write(fd, view[done:])
        except OSError as e:
            e.written = done  # type: ignore[attr-defined]
            raise
        if n == 0:  # pragma: no cover - write(2) returning 0 for a regular file
            raise OSError(errno.EIO, "write returned 0")
        done += n
    return done


def _undo(fd: int, written: int) -> None:
    """Cut the ``written`` bytes of a failed append off the end of the file (best effort)."""
    if written:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, os.fstat(fd).st_size - written)


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
                _write_all(self._fd, line)
            except OSError as e:
                _undo(self._fd, getattr(e, "written", 0))
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


class _Spool:
    """An in-memory sink for pyarrow's stream writer: :class:`SampleStream` takes the encoded
    bytes out and writes them itself, so a refused write can be cut off again and retried."""

    closed = False

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def write(self, data: Any) -> int:
        b = bytes(data)
        self._chunks.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class SampleStream:
    """Append-only Arrow IPC stream of samples for one source (one record batch per ``append``).

    Each batch is encoded in memory (buffers compressed with :data:`STREAM_COMPRESSION`), then
    appended to the file with ``write`` and ``fsync``. When the disk refuses it (full, quota, file
    size limit), the partial bytes are cut off again, so the file stays a valid stream of whole
    batches; the batch is kept in memory (up to :data:`MAX_PENDING_BYTES`, then the oldest are
    dropped and counted in :attr:`dropped_rows`) and written before the next one, and
    :meth:`append` raises :class:`RunError` saying why.
    """

    def __init__(self, path: Path, metrics: list[str], *, compression: str | None = STREAM_COMPRESSION) -> None:
        import pyarrow as pa

        unknown = [m for m in metrics if m not in schema.METRICS]
        if unknown:
            raise RunError(f"unknown metric column(s) {unknown}; known: {sorted(schema.METRICS)}")
        self.path = path
        self.metrics = list(metrics)
        self._schema = pa.schema(
            [(schema.T, pa.float64()), (schema.DEVICE, pa.string())]
            + [(m, pa.float64()) for m in self.metrics]
        )
        self._spool = _Spool()
        self._writer = pa.ipc.new_stream(self._spool, self._schema,
                                         options=pa.ipc.IpcWriteOptions(compression=compression))
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=self._schema))  # the schema message
        header = self._spool.take()
        #: rows written to the file / rows given up on while the disk refused them
        self.rows = 0
        self.dropped_rows = 0
        self._pending: collections.deque[tuple[bytes, int]] = collections.deque()
        self._pending_bytes = 0
        self._closed = False
        self._header = header
        #: damage done to the file from outside while recording (deleted, truncated), one line each
        self.problems: list[str] = []
        self._base = path
        self._open_file(path)

    def _open_file(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise storage_error(path, e, "samples") from None
        try:
            _write_all(self._fd, self._header)
        except OSError as e:
            _undo(self._fd, getattr(e, "written", 0))
            os.close(self._fd)
            raise storage_error(path, e, "samples") from None
        self.path = path
        #: bytes this stream has put in its file (what the file's size must be)
        self._size = len(self._header)
        self._rows_in_file = 0

    def _check_file(self) -> None:
        """Notice the file deleted or truncated from outside (a cleanup script, a user): say what
        was lost in :attr:`problems` and go on in a new file beside it, so later samples are kept."""
        try:
            st = os.fstat(self._fd)
        except OSError:
            return
        if st.st_nlink > 0 and st.st_size >= self._size:
            return
        if st.st_nlink == 0:
            what = (f"{self.path.name} was deleted from outside wattprof during the run: the "
                    f"{self._rows_in_file} samples written to it are lost")
        else:
            what = (f"{self.path.name} was truncated from outside wattprof during the run ({self._size} to "
                    f"{st.st_size} bytes): of the {self._rows_in_file} samples written to it, those past the "
                    "cut are lost")
        os.close(self._fd)
        n = 2
        while (new := self._base.with_name(f"{self._base.stem}-r{n}{self._base.suffix}")).exists():
            n += 1
        self.problems.append(f"{what}; recording went on in {new.name}")
        self._open_file(new)

    @property
    def pending_rows(self) -> int:
        """Rows encoded but not yet on disk (the disk refused them so far)."""
        return sum(n for _, n in self._pending)

    def append(self, rows: list[dict]) -> None:
        """Write ``rows`` (dicts with ``t``, ``device`` and metric values) as one batch, durably.
        With no rows, retries what the disk refused before."""
        if rows:
            import pyarrow as pa

            cols: dict[str, list] = {schema.T: [], schema.DEVICE: []}
            for m in self.metrics:
                cols[m] = []
            for r in rows:
                cols[schema.T].append(float(r[schema.T]))
                cols[schema.DEVICE].append(str(r[schema.DEVICE]))
                for m in self.metrics:
                    v = r.get(m)
                    cols[m].append(None if v is None else float(v))
            batch = pa.record_batch([pa.array(cols[c.name], c.type) for c in self._schema], schema=self._schema)
            self._writer.write_batch(batch)
            data = self._spool.take()
            self._pending.append((data, len(rows)))
            self._pending_bytes += len(data)
        self._drain()

    def _drain(self) -> None:
        if not self._pending:
            return
        if self._closed:
            raise RunError(f"{self.path}: appended to after close")
        self._check_file()
        data = b"".join(d for d, _ in self._pending)
        try:
            _write_all(self._fd, data)
        except OSError as e:
            _undo(self._fd, getattr(e, "written", 0))
            while self._pending_bytes > MAX_PENDING_BYTES and len(self._pending) > 1:
                d, n = self._pending.popleft()
                self._pending_bytes -= len(d)
                self.dropped_rows += n
            raise storage_error(self.path, e, "samples") from None
        written = sum(n for _, n in self._pending)
        self.rows += written
        self._rows_in_file += written
        self._size += len(data)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            os.fsync(self._fd)
        except OSError as e:  # the batches are in the file (whole); they may not be durable yet
            raise storage_error(self.path, e, "samples (fsync)") from None

    def close(self) -> None:
        """Write what is pending and the end-of-stream marker; rows the disk still refuses are
        counted in :attr:`dropped_rows` and a :class:`RunError` says so. Safe to call twice."""
        if self._closed:
            return
        try:
            self._check_file()
            self._drain()
        except RunError:
            self.dropped_rows += self.pending_rows
            self._pending.clear()
            raise
        finally:
            self._writer.close()
            eos = self._spool.take()
            try:  # the marker is optional: readers stop at EOF too
                _write_all(self._fd, eos)
                os.fsync(self._fd)
            except OSError as e:
                _undo(self._fd, getattr(e, "written", 0))
            self._closed = True
            os.close(self._fd)


def _read_stream(path: Path) -> tuple[pa.Table | None, bool]:
    """Read the complete, valid batches of an Arrow stream; return (table, torn) where ``torn``
    says a partial or damaged batch (an interrupted write, a corrupted file) and everything after
    it was dropped. Never raises for damaged content; :class:`RunError` if the file is unreadable."""
    import pyarrow as pa

    batches = []
    torn = False
    try:
        f = pa.OSFile(str(path), "rb")
    except OSError as e:
        raise RunError(f"{path}: cannot read samples ({e.strerror or e})") from None
    with f:
        try:
            reader = pa.ipc.open_stream(f)
        except Exception:  # noqa: BLE001 - not even a whole schema message: nothing to read
            return None, path.stat().st_size > 0
        while True:
            try:
                batch = reader.read_next_batch()
                batch.validate(full=True)  # damaged offsets or lengths: stop before using them
            except StopIteration:
                break
            except Exception:  # noqa: BLE001 - any damage ends the readable part of the stream
                torn = True
                break
            batches.append(batch)
        try:
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except Exception:  # noqa: BLE001
            return None, True
    return table, torn


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
        from . import __version__

        p = Path(path)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run directory {p}: {e.strerror or e}") from None
        now = time.time() if clock_time is None else clock_time
        meta = {
            "format": FORMAT,
            "id": uuid.uuid4().hex[:12],
            "name": name or p.name,
            "tags": dict(tags or {}),
            "command": redact_command(list(command)) if command else None,
            "host": {"hostname": socket.gethostname(), "pid": os.getpid()},
            "wattprof_version": __version__,
            "started_at": now,
            "ended_at": None,
            "status": "recording",
            "exit_code": None,
            "interval_s": interval_s,
            "devices": {},
            "sources": {},
            "errors": [],
        }
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
                _write_all(fd, bytes(RESERVE_BYTES))
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()

    @classmethod
    def open_existing(cls, path: str | Path) -> RunWriter:
        """Open a run to add data (``wattprof import`` on an existing run)."""
        from .repair import refuse_if_recording

        p = Path(path)
        meta = Run.read_meta(p)
        refuse_if_recording(p, meta, "import into it")  # its recorder rewrites meta.json at the end
        return cls(path=p, meta=meta)

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
        """Write a whole samples frame for one source (imports): straight to Parquet, atomically."""
        import pyarrow as pa

        cols = [schema.T, schema.DEVICE] + [c for c in df.columns if c in schema.METRICS]
        out = df[cols].copy()
        out[schema.T] = out[schema.T].astype("float64")
        for c in cols[2:]:
            out[c] = out[c].astype("float64")
        write_parquet(pa.Table.from_pandas(out, preserve_index=False), self.path / f"samples-{source_key}.parquet")

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


def write_parquet(table: pa.Table, final: Path) -> None:
    """Write ``table`` to ``final`` atomically (temporary file, fsync, rename), sorted by device
    then time (what readers want, and runs of one device compress better). :class:`RunError`
    when the disk refuses it; nothing is left behind then."""
    import pyarrow.parquet as pq

    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        if table.num_rows > 1:
            table = table.sort_by([(schema.DEVICE, "ascending"), (schema.T, "ascending")])
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise storage_error(final, e, "samples") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def compact(path: Path, *, errors: list[str] | None = None) -> None:
    """Turn each ``samples-*.arrows`` stream into ``samples-*.parquet`` (atomic rename, then delete).

    A stream whose Parquet file cannot be written stays as it is (readable); the problem is
    appended to ``errors``, or raised as :class:`RunError` when ``errors`` is None."""
    for stream in sorted(path.glob("samples-*.arrows")):
        table, torn = _read_stream(stream)
        final = stream.with_suffix(".parquet")
        if table is not None and table.num_rows:
            try:
                write_parquet(table, final)
            except RunError as e:
                if errors is None:
                    raise
                errors.append(f"{e}; the samples stay in {stream.name}")
                continue
        if torn and errors is not None:
            errors.append(f"{stream.name}: a partly written or damaged chunk was dropped at compaction")
        stream.unlink()


#: meta.json fields readers rely on, with the type each must have (else reset, with a warning).
META_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str, type(None)), "tags": (dict,), "command": (list, type(None)),
    "host": (dict,), "started_at": (int, float, type(None)), "ended_at": (int, float, type(None)),
    "status": (str,), "exit_code": (int, type(None)), "interval_s": (int, float, type(None)),
    "devices": (dict,), "sources": (dict,), "errors": (list,),
}
_META_DEFAULTS: dict[str, Any] = {"id": "", "name": None, "tags": {}, "command": None, "host": {},
                                  "started_at": None, "ended_at": None, "status": "unfinished",
                                  "exit_code": None, "interval_s": None, "devices": {}, "sources": {},
                                  "errors": []}
#: Ranges of numeric meta.json fields (inclusive): a value outside is reset, with a warning. Times
#: are Unix seconds up to the year 2100 (milliseconds or 1e300 would crash date formatting later).
MAX_UNIX_TIME = 4102444800.0
META_RANGES: dict[str, tuple[float, float]] = {
    "started_at": (0.0, MAX_UNIX_TIME), "ended_at": (0.0, MAX_UNIX_TIME),
    "interval_s": (1e-6, 86400.0), "exit_code": (-(2**31), 2**31 - 1),
}
#: per-device fields with a type readers rely on
_DEVICE_NUMBERS = ("power_limit_w",)
#: a device's power limit, in watts (a whole node stays under a megawatt)
_POWER_LIMIT_RANGE = (0.0, 1e6)
_DEVICE_TEXTS = ("name", "uuid", "power_source", "kind", "vendor", "note")




def _clean_meta(meta: dict) -> list[str]:
    """Reset fields of ``meta`` whose type is wrong (in place); return what was reset."""
    problems: list[str] = []
    for key, types in META_FIELDS.items():
        if key not in meta:
            continue
        v = meta[key]
        ok = isinstance(v, types) and not isinstance(v, bool)
        if ok and types[0] in (int, float) and v is not None and not _finite(v):
            ok = False
        if not ok:
            problems.append(f"'{key}' is {type(v).__name__} {str(v)[:40]!r}, ignored")
            meta[key] = _META_DEFAULTS[key]
            continue
        lo_hi = META_RANGES.get(key)
        if lo_hi is not None and v is not None and not lo_hi[0] <= v <= lo_hi[1]:
            problems.append(f"'{key}' is {str(v)[:40]!r}, outside {lo_hi[0]:g}..{lo_hi[1]:g}"
                            f"{' (Unix seconds expected)' if key.endswith('_at') else ''}, ignored")
            meta[key] = _META_DEFAULTS[key]
    tags = meta.get("tags") or {}
    meta["tags"] = {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in tags.items()}
    if meta.get("command") is not None:
        meta["command"] = [str(a) for a in meta["command"]]
    devices: dict[str, dict] = {}
    for dev, info in (meta.get("devices") or {}).items():
        if not isinstance(info, dict):
            problems.append(f"device {str(dev)[:40]!r}: not an object, ignored")
            continue
        info = dict(info)
        for k in _DEVICE_NUMBERS:
            if k in info and info[k] is not None and not (
                    _finite(info[k]) and _POWER_LIMIT_RANGE[0] < info[k] <= _POWER_LIMIT_RANGE[1]):
                problems.append(f"device {str(dev)[:40]!r}: '{k}' is {str(info[k])[:40]!r}, ignored")
                info[k] = None
        for k in _DEVICE_TEXTS:
            if k in info and info[k] is not None and not isinstance(info[k], str):
                info[k] = json.dumps(info[k], default=str)
        devices[str(dev)] = info
    meta["devices"] = devices
    sources: dict[str, dict] = {}
    for key, info in (meta.get("sources") or {}).items():
        if not isinstance(info, dict):
            problems.append(f"source {str(key)[:40]!r}: not an object, ignored")
            continue
        info = dict(info)
        caveats = info.get("caveats")
        if caveats is not None:
            info["caveats"] = [str(c) for c in caveats] if isinstance(caveats, list) else [str(caveats)]
        sources[str(key)] = info
    meta["sources"] = sources
    return problems


def _clean_samples(df: pd.DataFrame, name: str, warnings: list[str]) -> pd.DataFrame | None:
    """A samples frame as readers expect it: ``t`` (finite float64), ``device`` (str) and known
    metric columns (float64, NaN for missing or non-finite); anything else is dropped, said in
    ``warnings``. Cheap on a well-formed frame (no copies of its columns)."""
    import numpy as np
    import pandas as pd

    if df.columns.has_duplicates:
        df = df.loc[:, ~df.columns.duplicated()]
        warnings.append(f"{name}: duplicate columns ignored")
    if schema.T not in df.columns or schema.DEVICE not in df.columns:
        warnings.append(f"{name}: no '{schema.T}' or '{schema.DEVICE}' column, samples skipped")
        return None
    metrics = [c for c in df.columns if c in schema.METRICS]
    other = [str(c) for c in df.columns if c not in schema.METRICS and c not in (schema.T, schema.DEVICE)]
    if other:
        warnings.append(f"{name}: unknown column(s) {', '.join(other[:5])} ignored")
        df = df[[schema.T, schema.DEVICE, *metrics]]
    for c in (schema.T, *metrics):
        col = df[c]
        if col.dtype != np.float64:
            try:
                col = pd.to_numeric(col, errors="coerce").astype("float64")
            except (TypeError, ValueError):
                col = pd.Series(np.nan, index=df.index)
            df = df.assign(**{c: col})
            warnings.append(f"{name}: column {c} was not float64; converted (unreadable values missing)")
        values = col.to_numpy()
        if c != schema.T and np.isinf(values).any():
            df = df.assign(**{c: col.where(np.isfinite(values))})
            warnings.append(f"{name}: infinite values in {c} read as missing")
    dev = df[schema.DEVICE]
    if dev.isna().any():
        warnings.append(f"{name}: samples without a device dropped")
        df = df[dev.notna()]
    if not isinstance(df[schema.DEVICE].dtype, pd.StringDtype):
        df = df.assign(**{schema.DEVICE: df[schema.DEVICE].astype(str)})
    t = df[schema.T].to_numpy()
    bad = ~np.isfinite(t)
    if bad.any():
        warnings.append(f"{name}: {int(bad.sum())} sample(s) without a finite time dropped")
        df = df[~bad]
    return df


@dataclass
class Run:
    """A run directory opened for reading. Tables are read lazily and cached."""

    path: Path
    meta: dict
    warnings: list[str] = field(default_factory=list)
    _samples: pd.DataFrame | None = field(default=None, repr=False)
    _steps: pd.DataFrame | None = field(default=None, repr=False)
    _events: pd.DataFrame | None = field(default=None, repr=False)

    @staticmethod
    def read_meta(path: Path, warnings: list[str] | None = None) -> dict:
        """``meta.json`` of the run at ``path``, checked: :class:`InputError` when it is missing,
        not JSON or of another format; fields of the wrong type are reset (with a warning
        appended to ``warnings``), so readers can trust the types of :data:`META_FIELDS`."""
        mp = path / META
        if not path.is_dir():
            raise InputError("not a directory (expected a wattprof run directory)", path=str(path))
        if not mp.is_file():
            raise InputError("no meta.json: not a wattprof run directory", path=str(path))
        try:
            meta = json.loads(mp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise InputError(f"corrupt meta.json ({type(e).__name__}: {str(e)[:200]})", path=str(mp)) from None
        except OSError as e:
            raise RunError(f"{mp}: cannot read ({e.strerror or e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else "?"
            raise InputError(f"unsupported run format {str(fmt)[:40]} (expected {FORMAT})", path=str(mp))
        problems = _clean_meta(meta)
        if warnings is not None:
            warnings.extend(f"meta.json: {m}" for m in problems)
        return meta

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        warnings: list[str] = []
        meta = cls.read_meta(p, warnings)
        return cls(path=p, meta=meta, warnings=warnings)

    def __repr__(self) -> str:
        tags = " ".join(f"{k}={v}" for k, v in (self.meta.get("tags") or {}).items())
        devices = ",".join(self.devices) or "no devices"
        return (f"<wattprof.Run {self.name!r} {self.status} id={self.meta.get('id')} devices={devices}"
                + (f" tags: {tags}" if tags else "") + f" at {str(self.path)!r}>")

    def report(self, **options: Any) -> Any:
        """The run's :class:`wattprof.reports.model.Report` (options: ``carbon=``, ``carbon_note=``,
        ``bottlenecks=``; see :func:`wattprof.reports.build.build_report`)."""
        from .reports.build import build_report

        return build_report(self, **options)

    def step_energy(self) -> pd.DataFrame:
        """One row per step: ``energy_j``, ``j_per_token``, ``mean_power_w``, ``source`` and ``boundary``
        (the report's: e.g. the GPUs' counters), see :mod:`wattprof.analysis.per_step`."""
        from .analysis import energy as energy_mod
        from .analysis.per_step import step_table
        from .reports.build import boundary_devices

        rep = self.report(bottlenecks=False, timeline_points=2)
        curves = energy_mod.curves(self.samples)
        chosen = [d.device for d in boundary_devices(rep.devices)]
        return step_table([curves[d] for d in chosen if d in curves], self.steps, rep.boundary)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def status(self) -> str:
        """``finished``, ``failed``, ``interrupted``, or ``unfinished`` (still recording or crashed)."""
        s = self.meta.get("status", "unfinished")
        return "unfinished" if s == "recording" else s

    @property
    def devices(self) -> dict[str, dict]:
        return self.meta.get("devices", {})

    @property
    def samples(self) -> pd.DataFrame:
        if self._samples is None:
            self._samples = self._read_samples()
        return self._samples

    @property
    def steps(self) -> pd.DataFrame:
        if self._steps is None:
            self._steps = self._read_steps()
        return self._steps

    @property
    def events(self) -> pd.DataFrame:
        if self._events is None:
            import pandas as pd

            rows: list[dict] = []
            for f in sorted(self.path.glob("events-*.jsonl")):
                for obj in self._read_jsonl(f):
                    t = obj.get("t")
                    obj["t"] = float(t) if _finite(t) else math.nan
                    obj["kind"] = str(obj.get("kind") or "")
                    obj["message"] = str(obj.get("message") or "")
                    rows.append(obj)
            self._events = pd.DataFrame(rows, columns=None if rows else ["t", "kind", "message"])
        return self._events

    def _read_samples(self) -> pd.DataFrame:
        import pandas as pd
        import pyarrow.parquet as parquet

        frames = []
        stems: set[str] = set()
        for pq in sorted(self.path.glob("samples-*.parquet")):
            try:
                table = parquet.read_table(pq)
                table.validate(full=True)  # damaged strings (bad UTF-8) or offsets: caught here, not later
                df = table.to_pandas()
            except Exception as e:  # noqa: BLE001 - a damaged file of any kind: skipped, said
                msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
                self.warnings.append(f"{pq.name}: unreadable samples skipped ({msg})")
                continue
            stems.add(pq.stem)  # a stream of the same name is used only if this file is unreadable
            frames.append(_clean_samples(df, pq.name, self.warnings))
        for st in sorted(self.path.glob("samples-*.arrows")):
            if st.stem in stems:  # compacted already; the stream is a leftover of an interrupted rename
                continue
            table, torn = _read_stream(st)
            if torn:
                self.warnings.append(f"{st.name}: a partly written (or damaged) chunk and what follows it "
                                     "were dropped")
            if table is not None:
                try:
                    df = table.to_pandas()
                except Exception as e:  # noqa: BLE001
                    self.warnings.append(f"{st.name}: unreadable samples skipped ({type(e).__name__})")
                    continue
                frames.append(_clean_samples(df, st.name, self.warnings))
        frames = [f for f in frames if f is not None and len(f)]
        if not frames:
            return pd.DataFrame({schema.T: pd.Series(dtype="float64"), schema.DEVICE: pd.Series(dtype=str)})
        df = pd.concat(frames, ignore_index=True, sort=False)
        return df.sort_values([schema.DEVICE, schema.T], kind="stable").reset_index(drop=True)

    def _read_jsonl(self, f: Path) -> list[dict]:
        rows = []
        try:
            with f.open(encoding="utf-8", errors="replace") as fh:
                lines = fh.read().split("\n")
        except OSError as e:
            self.warnings.append(f"{f.name}: unreadable, skipped ({e.strerror or e})")
            return rows
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                if n == len(lines):  # a torn last line from an interrupted write
                    self.warnings.append(f"{f.name}:{n}: partly written last line dropped")
                    continue
                self.warnings.append(f"{f.name}:{n}: not JSON, line skipped")
                continue
            if isinstance(obj, dict):
                rows.append(obj)
        return rows

    def _read_steps(self) -> pd.DataFrame:
        import pandas as pd

        from .formats.steps_jsonl import normalize_step, steps_frame
        from .scan import read_steps_columnar

        fast = read_steps_columnar(sorted(self.path.glob("steps-*.jsonl")))  # None: needs the checks below
        if fast is not None:
            return fast
        rows = []
        for f in sorted(self.path.glob("steps-*.jsonl")):
            for i, obj in enumerate(self._read_jsonl(f)):
                try:
                    rows.append(normalize_step(obj, f.name, i + 1))
                except InputError as e:
                    self.warnings.append(f"{e} (step skipped)")
                except Exception as e:  # noqa: BLE001 - a damaged line never stops the reader
                    self.warnings.append(f"{f.name}: step {i + 1} unreadable ({type(e).__name__}), skipped")
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype="float64" if c.startswith("t_") or c == "tokens" else object)
                                 for c in schema.STEP_COLUMNS})
        return steps_frame(rows)


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

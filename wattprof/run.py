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

import contextlib
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import schema
from .errors import InputError, RunError

FORMAT = 1
META = "meta.json"

if TYPE_CHECKING:  # pandas is imported by the readers only: the recording path needs pyarrow alone
    import pandas as pd
    import pyarrow as pa

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """A string usable inside a file name (no separators, no leading dots)."""
    return _SAFE.sub("_", text).strip("._") or "x"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON: write a temporary file, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; a run directory's files follow the umask like any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class JsonlAppender:
    """Append-only JSON lines; each line is written whole and flushed (fsync on ``sync``/close)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def append(self, obj: dict) -> None:
        line = json.dumps(obj, default=str, allow_nan=False) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()

    def sync(self) -> None:
        with self._lock:
            if not self._f.closed:
                os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()


class SampleStream:
    """Append-only Arrow IPC stream of samples for one source (one record batch per ``append``)."""

    def __init__(self, path: Path, metrics: list[str]) -> None:
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
        self._f = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._writer = pa.ipc.new_stream(self._f, self._schema)
        self._f.flush()
        self.rows = 0

    def append(self, rows: list[dict]) -> None:
        """Write ``rows`` (dicts with ``t``, ``device`` and metric values) as one batch, durably."""
        if not rows:
            return
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
        self._f.flush()
        os.fsync(self._f.fileno())
        self.rows += len(rows)

    def close(self) -> None:
        if not self._f.closed:
            self._writer.close()
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def _read_stream(path: Path) -> tuple[pa.Table | None, bool]:
    """Read the complete batches of an Arrow stream; return (table, torn) where ``torn`` says a
    partial batch at the end (an interrupted write) was dropped."""
    import pyarrow as pa

    batches = []
    torn = False
    try:
        with pa.OSFile(str(path), "rb") as f:
            try:
                reader = pa.ipc.open_stream(f)
            except (pa.ArrowInvalid, OSError):
                return None, path.stat().st_size > 0
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError):
                    torn = True
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
    except OSError as e:
        raise RunError(f"{path}: cannot read samples ({e.strerror or e})") from None
    return table, torn


@dataclass
class RunWriter:
    """Writes one run directory. Owns ``meta.json`` (only the process that created the run does)."""

    path: Path
    meta: dict
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _streams: dict[str, SampleStream] = field(default_factory=dict, repr=False)
    _events: JsonlAppender | None = field(default=None, repr=False)

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
        if (p / META).exists():
            raise RunError(f"{p} already holds a run (meta.json exists); choose another --out")
        now = time.time() if clock_time is None else clock_time
        meta = {
            "format": FORMAT,
            "id": uuid.uuid4().hex[:12],
            "name": name or p.name,
            "tags": dict(tags or {}),
            "command": list(command) if command else None,
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
        w.write_meta()
        return w

    @classmethod
    def open_existing(cls, path: str | Path) -> RunWriter:
        """Open a run to add data (``wattprof import`` on an existing run)."""
        p = Path(path)
        meta = Run.read_meta(p)
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
        s = SampleStream(self.path / f"samples-{source_key}.arrows", metrics)
        self._streams[source_key] = s
        return s

    def write_samples_frame(self, source_key: str, df: pd.DataFrame) -> None:
        """Write a whole samples frame for one source (imports): straight to Parquet, atomically."""
        cols = [schema.T, schema.DEVICE] + [c for c in df.columns if c in schema.METRICS]
        out = df[cols].copy()
        out[schema.T] = out[schema.T].astype("float64")
        for c in cols[2:]:
            out[c] = out[c].astype("float64")
        final = self.path / f"samples-{source_key}.parquet"
        tmp = final.with_name(f".{final.name}.tmp")
        out.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def events(self) -> JsonlAppender:
        if self._events is None:
            self._events = JsonlAppender(self.path / f"events-{os.getpid()}.jsonl")
        return self._events

    def event(self, kind: str, message: str, *, t: float | None = None, **extra: Any) -> None:
        self.events().append({"t": time.time() if t is None else t, "kind": kind, "message": message, **extra})

    def finalize(self, *, status: str, exit_code: int | None = None, ended_at: float | None = None) -> None:
        """Close streams, compact them to Parquet, and mark the run finished (or failed/interrupted)."""
        for s in self._streams.values():
            s.close()
        compact(self.path)
        if self._events is not None:
            self._events.close()
        self.meta["status"] = status
        self.meta["exit_code"] = exit_code
        self.meta["ended_at"] = time.time() if ended_at is None else ended_at
        self.write_meta()


def compact(path: Path) -> None:
    """Turn each ``samples-*.arrows`` stream into ``samples-*.parquet`` (atomic rename, then delete)."""
    import pyarrow.parquet as pq

    for stream in sorted(path.glob("samples-*.arrows")):
        table, _torn = _read_stream(stream)
        final = stream.with_suffix(".parquet")
        if table is not None and table.num_rows:
            tmp = final.with_name(f".{final.name}.tmp")
            pq.write_table(table, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        stream.unlink()


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
    def read_meta(path: Path) -> dict:
        mp = path / META
        if not path.is_dir():
            raise InputError("not a directory (expected a wattprof run directory)", path=str(path))
        if not mp.is_file():
            raise InputError("no meta.json: not a wattprof run directory", path=str(path))
        try:
            meta = json.loads(mp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"corrupt meta.json ({e})", path=str(mp)) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"unsupported run format {meta.get('format') if isinstance(meta, dict) else '?'}"
                             f" (expected {FORMAT})", path=str(mp))
        return meta

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        return cls(path=p, meta=cls.read_meta(p))

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
                rows.extend(self._read_jsonl(f))
            self._events = pd.DataFrame(rows, columns=None if rows else ["t", "kind", "message"])
        return self._events

    def _read_samples(self) -> pd.DataFrame:
        import pandas as pd

        frames = []
        stems: set[str] = set()
        for pq in sorted(self.path.glob("samples-*.parquet")):
            stems.add(pq.stem)
            try:
                frames.append(pd.read_parquet(pq))
            except (OSError, ValueError) as e:
                self.warnings.append(f"{pq.name}: unreadable samples skipped ({str(e).splitlines()[0]})")
        for st in sorted(self.path.glob("samples-*.arrows")):
            if st.stem in stems:  # compacted already; the stream is a leftover of an interrupted rename
                continue
            table, torn = _read_stream(st)
            if torn:
                self.warnings.append(f"{st.name}: a partly written final chunk was dropped")
            if table is not None:
                frames.append(table.to_pandas())
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame({schema.T: pd.Series(dtype="float64"), schema.DEVICE: pd.Series(dtype=str)})
        df = pd.concat(frames, ignore_index=True, sort=False)
        return df.sort_values([schema.DEVICE, schema.T], kind="stable").reset_index(drop=True)

    def _read_jsonl(self, f: Path) -> list[dict]:
        rows = []
        with f.open(encoding="utf-8", errors="replace") as fh:
            lines = fh.read().split("\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
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

        rows = []
        for f in sorted(self.path.glob("steps-*.jsonl")):
            for i, obj in enumerate(self._read_jsonl(f)):
                try:
                    rows.append(normalize_step(obj, f.name, i + 1))
                except InputError as e:
                    self.warnings.append(f"{e} (step skipped)")
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

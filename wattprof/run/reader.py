"""Reading a run directory: :class:`Run` (meta checked, samples, steps and events as pandas
DataFrames, read lazily). Damaged or partly written content is skipped with a warning in
:attr:`Run.warnings`, never raised: a run killed mid-write stays readable."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self, cast

from .. import schema
from ..errors import InputError
from ..formats import finite_number as _finite
from .meta import read_meta
from .stream import read_stream

if TYPE_CHECKING:
    import pandas as pd


def clean_samples(df: pd.DataFrame, name: str, warnings: list[str]) -> pd.DataFrame | None:
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
        """``meta.json`` of the run at ``path``, checked (see :func:`wattprof.run.meta.read_meta`)."""
        return read_meta(path, warnings)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        p = Path(path)
        warnings: list[str] = []
        meta = cls.read_meta(p, warnings)
        return cls(path=p, meta=meta, warnings=warnings)

    def __repr__(self) -> str:
        tags = " ".join(f"{k}={v}" for k, v in (self.meta.get("tags") or {}).items())
        devices = ",".join(self.devices) or "no devices"
        return (f"<wattprof.Run {self.name!r} {self.status} id={self.meta.get('id')} devices={devices}"
                + (f" tags: {tags}" if tags else "") + f" at {str(self.path)!r}>")

    def release(self) -> None:
        """Drop the tables read so far (samples, steps, events); a later access reads them again.
        For code that walks many runs (``wattprof merge``) and must not hold them all."""
        self._samples = self._steps = self._events = None

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
    def interval_s(self) -> float | None:
        """The sampling interval the run was recorded at (``meta.interval_s``, seconds), or None
        when it is not known (an imported run): analysis reads the period here, not from gaps."""
        v = self.meta.get("interval_s")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            return None
        return float(v)

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
                    obj["t"] = float(cast(float, t)) if _finite(t) else math.nan
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
            frames.append(clean_samples(df, pq.name, self.warnings))
        for st in sorted(self.path.glob("samples-*.arrows")):
            if st.stem in stems:  # compacted already; the stream is a leftover of an interrupted rename
                continue
            table, torn = read_stream(st)
            if torn:
                self.warnings.append(f"{st.name}: a partly written (or damaged) chunk and what follows it "
                                     "were dropped")
            if table is not None:
                try:
                    df = table.to_pandas()
                except Exception as e:  # noqa: BLE001
                    self.warnings.append(f"{st.name}: unreadable samples skipped ({type(e).__name__})")
                    continue
                frames.append(clean_samples(df, st.name, self.warnings))
        frames = [f for f in frames if f is not None and len(f)]
        if not frames:
            return pd.DataFrame({schema.T: pd.Series(dtype="float64"), schema.DEVICE: pd.Series(dtype=str)})
        df = pd.concat(frames, ignore_index=True, sort=False)
        return df.sort_values([schema.DEVICE, schema.T], kind="stable").reset_index(drop=True)

    def _read_jsonl(self, f: Path) -> list[dict]:
        rows: list[dict] = []
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

        from ..formats.steps_jsonl import normalize_step, steps_frame
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

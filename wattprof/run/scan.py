"""A run's samples one device at a time, read from its Parquet files by row group.

The report of a week of an 8-GPU node must not hold the whole samples table (48 M rows x every
metric): :class:`SampleScan` indexes where each device's rows lie in each ``samples-*.parquet``
file (one pass over the dictionary-encoded ``device`` column), then reads one device's rows, only
the columns asked for, in batches of ``batch_rows`` rows (``ParquetFile.iter_batches`` over the row
groups that hold the device). Memory is then one device's columns at a time, whatever the length
of the run or the number of devices.

A device's frame is what the whole-table reader gives for it (:meth:`wattprof.run.Run.samples`
filtered to the device): its rows of every file in file order, stably sorted by time, with every
column any file has (NaN where a file lacks it). Runs that reader would clean or warn about
(a live ``.arrows`` stream, an unreadable file, unknown or non-float columns, non-finite times or
infinite values) raise :class:`NotScannable`, so the caller uses the whole-table reader and the
run's warnings stay what they were.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import schema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.parquet as pq

#: Rows per batch read from a Parquet file (about 8 MB per float column).
BATCH_ROWS = 1 << 20


class NotScannable(Exception):  # noqa: N818 - a reason to take the other path, not an error
    """The run's samples need the whole-table reader (its cleaning and warnings)."""


@dataclass
class _File:
    path: Path
    reader: pq.ParquetFile
    columns: list[str]
    #: first row of each row group, and one past the last row
    group_rows: np.ndarray
    #: device -> sorted row ranges ``(start, end)`` holding its rows
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    #: columns with no value in the whole file (Parquet statistics): filled with NaN, not decoded
    all_null: set[str] = field(default_factory=set)
    #: per thread: its own reader, and the last row group it read (``((group, columns, batch_rows), batches)``)
    local: threading.local = field(default_factory=threading.local)


def _string_type(t: object) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type  # type: ignore[attr-defined]
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _check_schema(path: Path, arrow_schema: object) -> list[str]:
    import pyarrow as pa

    names = list(arrow_schema.names)  # type: ignore[attr-defined]
    if len(set(names)) != len(names) or schema.T not in names or schema.DEVICE not in names:
        raise NotScannable(f"{path.name}: duplicate or missing t/device columns")
    for f in arrow_schema:  # type: ignore[attr-defined]
        if f.name == schema.DEVICE:
            ok = _string_type(f.type)
        else:
            ok = (f.name == schema.T or f.name in schema.METRICS) and pa.types.is_float64(f.type)
        if not ok:
            raise NotScannable(f"{path.name}: column {f.name} ({f.type}) needs cleaning")
    return names


@dataclass
class SampleScan:
    """Where each device's samples lie in a run's Parquet files; :meth:`frame` reads one device."""

    files: list[_File]
    #: every column of any file, in the order the whole-table reader has them
    columns: list[str]
    #: devices, sorted
    devices: list[str]
    batch_rows: int = BATCH_ROWS
    #: devices may be read by several threads at once (each has its own file readers)
    threads = True

    @classmethod
    def open(cls, run_path: str | Path, batch_rows: int = BATCH_ROWS) -> SampleScan:
        """Index the samples of the run at ``run_path``; :class:`NotScannable` when they need the
        whole-table reader."""
        import pyarrow.parquet as pq

        path = Path(run_path)
        parquets = sorted(path.glob("samples-*.parquet"))
        stems = {p.stem for p in parquets}
        if any(s.stem not in stems for s in path.glob("samples-*.arrows")):
            raise NotScannable("live sample streams (unfinished run)")
        files: list[_File] = []
        columns: list[str] = []
        for p in parquets:
            try:
                reader = pq.ParquetFile(p, read_dictionary=[schema.DEVICE])
            except Exception as e:  # noqa: BLE001 - any damage: the whole-table reader says what
                raise NotScannable(f"{p.name}: {type(e).__name__}") from None
            names = _check_schema(p, reader.schema_arrow)
            columns += [c for c in names if c not in columns]
            md = reader.metadata
            rows = np.concatenate([[0], np.cumsum([md.row_group(i).num_rows for i in range(md.num_row_groups)])])
            f = _File(p, reader, names, rows.astype(np.int64))
            f.ranges = _device_ranges(reader, batch_rows)
            f.all_null = _all_null(reader)
            files.append(f)
        devices = sorted({d for f in files for d in f.ranges})
        return cls(files, columns, devices, batch_rows)

    def rows(self, device: str) -> int:
        """How many samples ``device`` has."""
        return sum(e - s for f in self.files for s, e in f.ranges.get(device, []))

    def frame(self, device: str, columns: Iterable[str]) -> pd.DataFrame:
        """Every sample of ``device``: ``t``, ``device`` and those of ``columns`` that any file
        has (NaN where a file lacks one), sorted by ``t`` (stable)."""
        import pandas as pd

        cols = [c for c in dict.fromkeys(columns) if c in self.columns and c not in (schema.T, schema.DEVICE)]
        n = self.rows(device)
        held = [f for f in self.files if f.ranges.get(device)]
        # filled in place (no second copy); a column no file fills for this device costs no memory,
        # one every file fills needs no NaN first
        def fills(f: _File, c: str) -> bool:
            return c in f.columns and c not in f.all_null

        data = {c: np.empty(n) if all(fills(f, c) for f in held) else np.full(n, np.nan) if any(fills(f, c) for f in held)
                else np.broadcast_to(np.float64(np.nan), (n,)) for c in (schema.T, *cols)}
        at = 0
        for f in self.files:
            for chunk in _read_ranges(f, f.ranges.get(device, []),
                                      [c for c in data if c in f.columns and c not in f.all_null], self.batch_rows):
                m = len(chunk[schema.T])
                for c, v in chunk.items():
                    data[c][at:at + m] = v
                at += m
        t = data[schema.T]
        if not np.isfinite(t).all() or any(np.isinf(data[c]).any() for c in cols if data[c].strides != (0,)):
            raise NotScannable(f"{device}: non-finite times or infinite values need cleaning")
        if len(t) > 1 and not (np.diff(t) >= 0).all():
            order = np.argsort(t, kind="stable")
            data = {c: v[order] for c, v in data.items()}
        dev = pd.Categorical.from_codes(np.zeros(n, np.int8), categories=pd.Index([device], dtype=object))
        return pd.DataFrame({schema.T: data.pop(schema.T), schema.DEVICE: dev, **data}, copy=False)


def _all_null(reader: pq.ParquetFile) -> set[str]:
    """Columns whose every row group's statistics count only nulls."""
    md = reader.metadata
    out = set()
    for j in range(md.num_columns):
        name = md.schema.column(j).name
        stats = [md.row_group(g).column(j).statistics for g in range(md.num_row_groups)]
        if name != schema.T and stats and all(
                st is not None and st.has_null_count and st.null_count == md.row_group(g).num_rows
                for g, st in enumerate(stats)):
            out.add(name)
    return out


def _device_ranges(reader: pq.ParquetFile, batch_rows: int) -> dict[str, list[tuple[int, int]]]:
    """Row ranges of each device in one file: a row group whose statistics say it holds one device
    (finalised files are sorted by device: nearly all of them) from its metadata, the others from
    their dictionary-encoded ``device`` column."""
    md = reader.metadata
    j = reader.schema_arrow.get_field_index(schema.DEVICE)
    ids: dict[str, int] = {}
    starts: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    offset = 0
    prev = -1
    for g in range(md.num_row_groups):
        rows = md.row_group(g).num_rows
        one = _single_value(md.row_group(g).column(j).statistics, rows) if rows else None
        if one is not None:
            code = ids.setdefault(one, len(ids))
            if code != prev:
                starts.append(np.array([offset], np.int64))
                codes.append(np.array([code], np.int64))
                prev = code
            offset += rows
            continue
        for batch in reader.iter_batches(batch_size=batch_rows, row_groups=[g], columns=[schema.DEVICE]):
            col = batch.column(0)
            if col.null_count:
                raise NotScannable("samples without a device")
            names = col.dictionary.to_pylist()
            remap = np.array([ids.setdefault(str(n), len(ids)) for n in names], dtype=np.int64)
            code_a = remap[col.indices.to_numpy(zero_copy_only=False)] if len(names) else np.empty(0, np.int64)
            change = np.flatnonzero(np.diff(code_a, prepend=prev) != 0)
            starts.append(change + offset)
            codes.append(code_a[change])
            if len(code_a):
                prev = int(code_a[-1])
            offset += len(code_a)
    s = np.concatenate(starts) if starts else np.empty(0, np.int64)
    c = np.concatenate(codes) if codes else np.empty(0, np.int64)
    e = np.append(s[1:], offset)
    names_by_id = {i: n for n, i in ids.items()}
    out: dict[str, list[tuple[int, int]]] = {}
    for start, end, code in zip(s.tolist(), e.tolist(), c.tolist(), strict=True):
        out.setdefault(names_by_id[code], []).append((start, end))
    return out


def _single_value(stats: Any, rows: int) -> str | None:
    """The one value of a string column chunk whose statistics show no null and min == max."""
    if stats is None or not stats.has_min_max or not stats.has_null_count or stats.null_count \
            or stats.num_values != rows:
        return None
    lo, hi = stats.min, stats.max
    if isinstance(lo, bytes):
        lo, hi = lo.decode("utf-8", "replace"), hi.decode("utf-8", "replace")
    return str(lo) if isinstance(lo, str) and lo == hi else None


def _group_batches(f: _File, group: int, columns: list[str], batch_rows: int) -> list:
    """The batches of one row group; the last group read is kept, since the next device's rows
    usually start in the group where the previous device's end (files are sorted by device)."""
    import pyarrow.parquet as pq

    key = (group, tuple(columns), batch_rows)
    mine = f.local
    if getattr(mine, "last", None) is None or mine.last[0] != key:
        if getattr(mine, "reader", None) is None:  # devices may be read by several threads at once
            mine.reader = pq.ParquetFile(f.path)
        mine.last = None  # the previous group is dropped before the next is decoded
        mine.last = (key, list(mine.reader.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)))
    return mine.last[1]


def _read_ranges(f: _File, ranges: list[tuple[int, int]], columns: list[str],
                 batch_rows: int) -> Iterable[dict[str, np.ndarray]]:
    """The rows of ``ranges`` (sorted row ranges of ``f``), ``columns`` as float64 arrays, batch by batch."""
    if not ranges:
        return
    bounds = f.group_rows
    r = np.array(ranges, dtype=np.int64)
    groups = [g for g in range(len(bounds) - 1)
              if ((r[:, 0] < bounds[g + 1]) & (r[:, 1] > bounds[g])).any()]
    for g in groups:
        offset = int(bounds[g])
        for batch in _group_batches(f, g, columns, batch_rows):
            lo, hi = offset, offset + batch.num_rows
            offset = hi
            hit = (r[:, 0] < hi) & (r[:, 1] > lo)
            for s, e in r[hit].tolist():
                a, b = max(s, lo), min(e, hi)
                part = batch.slice(a - lo, b - a)
                yield {c: part.column(i).to_numpy(zero_copy_only=False) for i, c in enumerate(part.schema.names)}


# --- steps -------------------------------------------------------------------------------------------


def read_steps_columnar(files: list[Path]) -> pd.DataFrame | None:
    """The steps of a run's ``steps-*.jsonl`` files read column-wise (pyarrow's JSON reader; a
    week of steps is over a million lines): the frame :meth:`wattprof.run.Run.steps` builds line by
    line. None when any line needs that reader's checks or warnings: a torn or damaged line, a
    missing or out-of-range time or token count, a value of another type, non-ASCII text."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pj

    frames = []
    for f in files:
        try:
            table = pj.read_json(f, read_options=pj.ReadOptions(block_size=1 << 26))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
            return None
        if table.num_rows:
            try:
                df = _steps_of(table)
            except (pa.ArrowException, ValueError, TypeError):  # a column pyarrow cannot convert
                return None
            if df is None:
                return None
            frames.append(df)
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    for c in schema.STEP_COLUMNS:  # as formats.steps_jsonl.steps_frame finishes the line-by-line rows
        if c not in df.columns:
            df[c] = None
    df["label"] = df["label"].fillna(schema.DEFAULT_LABEL).astype(str)
    df = df.sort_values(["t_start", "t_end"], kind="stable").reset_index(drop=True)
    if df["step"].isna().all():
        df["step"] = range(len(df))
    return df


def _ascii_text(col: object) -> bool:
    import pyarrow.compute as pc

    return str(col.type) == "string" and all(  # type: ignore[attr-defined]
        pc.all(pc.string_is_ascii(ch)).as_py() is not False for ch in col.chunks)  # type: ignore[attr-defined]


def _steps_of(table: object) -> pd.DataFrame | None:
    """One file's steps as :func:`wattprof.formats.steps_jsonl.normalize_step` makes them, or None."""
    import pandas as pd

    from ..formats.steps_jsonl import MAX_TIME_S, MAX_TOKENS

    n = table.num_rows  # type: ignore[attr-defined]
    cols: dict[str, object] = {}
    labels: dict[str, pd.Series] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):  # type: ignore[attr-defined]
        kind = str(col.type)
        if kind == "null" and (name in schema.LABEL_KEYS or name == "tokens"):
            continue
        if name in schema.LABEL_KEYS:
            if not _ascii_text(col):
                return None
            labels[name] = col.to_pandas()
        elif kind in ("int64", "double"):
            v = col.to_numpy()
            cols[name] = v.astype(np.float64) if name in ("t_start", "t_end", "tokens") else v
        elif not col.null_count and _ascii_text(col):
            cols[name] = col.to_pandas()
        else:
            return None
    t0, t1 = cols.get("t_start"), cols.get("t_end")
    if not isinstance(t0, np.ndarray) or not isinstance(t1, np.ndarray):
        return None
    tok = cols.get("tokens", np.full(n, np.nan))
    assert isinstance(tok, np.ndarray)
    bad = (np.isnan(t0) | np.isnan(t1) | (np.abs(t0) > MAX_TIME_S) | (np.abs(t1) > MAX_TIME_S) | (t1 < t0)
           | np.isinf(tok) | (tok < 0) | (tok > MAX_TOKENS))
    if bad.any():
        return None
    df = pd.DataFrame(cols)
    df["tokens"] = tok
    label = None
    for k in schema.LABEL_KEYS:  # the first of label, phase, kind that a line has
        if k in labels:
            label = labels[k] if label is None else label.where(label.notna(), labels[k])
    df["label"] = label if label is not None else schema.DEFAULT_LABEL
    return df

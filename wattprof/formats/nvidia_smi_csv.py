"""The ``nvidia-smi-csv`` format: ``nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]``.

One line per GPU per period (``-lms N`` / ``-l N``), values separated by ``", "``. With a header the
first line names the fields (``power.draw [W]``); without one the caller must pass the
``--query-gpu`` field list. With units, values carry `` W``, `` MHz``, `` MiB``, `` %``; unsupported
values print as ``[N/A]``, ``[Not Supported]`` (read as NaN).

``timestamp`` (``YYYY/MM/DD HH:MM:SS.mmm``) is the local time of the machine that ran nvidia-smi,
without a zone. ``utc_offset_h`` says which zone it was: the printed time is UTC + offset hours
(0: the machine ran in UTC, as the H100 fixtures did). ``index`` gives the device ``gpu:<index>``;
without it GPUs are numbered by first appearance of their ``uuid``. ``name``, ``uuid`` and the power
limit go to the devices table. Fields wattprof has no column for are ignored.

:func:`parse_csv` reads a file; :class:`LineParser` reads a live stream line by line. Both run
the same conversion code (:class:`_Layout`), so they give identical values. The file is read as a
stream of chunks of :data:`CHUNK_LINES` lines, each converted to float64 arrays at once: memory
holds the result (float64 metric columns and a one-byte device code per row: about 0.4 bytes per
byte of a typical capture), not the text (``benchmarks/csv_memory.py``). Each distinct printed value
is converted once per chunk, and only lines that start a value like a field name are checked for
being a header.

Values no GPU prints are rejected with the line: negative power, utilisation, clocks or memory.
Timestamps of a GPU going backwards are sorted, and a GPU's duplicate timestamps keep their first
row; both are said in :attr:`ParseResult.warnings` (conflicting duplicates counted apart).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..power_columns import MEASURED_POWER
from ..schema import DEVICE, METRICS, T
from .nvidia_smi_fields import (  # noqa: F401 - FIELD_MAP, check_utc_offset: re-exported
    FIELD_MAP,
    IDENTITY,
    INDEX,
    MAX_UTC_OFFSET_H,
    MAYBE_HEADER_RE,
    SPECS,
    TIMESTAMP,
    TS_RE,
    check_utc_offset,
    header_name,
    is_header,
    is_missing,
    split_line,
    to_unix,
)


@dataclass
class ParseResult:
    """What :func:`parse_csv` returns."""

    #: Columns ``t``, ``device`` (a categorical of ``gpu:N``; ``.astype(str)`` for plain strings) and
    #: schema metric columns (float64), sorted by ``t`` then device.
    samples: pd.DataFrame
    #: ``{"gpu:0": {"name": ..., "uuid": ..., "power_limit_w": ...}}`` (keys where known).
    devices: dict[str, dict]
    #: Things skipped on purpose (a truncated last line), one line each, for the user.
    warnings: list[str] = field(default_factory=list)


#: Lines converted at once by :func:`parse_csv` (bounds the memory of the text being converted).
CHUNK_LINES = 8192
# --- the shared conversion ----------------------------------------------------------------------

class _Layout:
    """A field list, checked, and the conversion of columns of printed values to schema arrays."""

    def __init__(self, fields: Sequence[str], path: str | None, utc_offset_h: float) -> None:
        self.fields = [f.strip() for f in fields]
        self.path = path
        self.utc_offset_h = check_utc_offset(utc_offset_h)
        self._check()
        #: schema column -> positions of its source fields, preferred first.
        self.sources: dict[str, list[int]] = {}
        order = list(SPECS)
        mapped = sorted((order.index(f), i) for i, f in enumerate(self.fields) if f in SPECS)
        for _, i in mapped:
            self.sources.setdefault(SPECS[self.fields[i]].column, []).append(i)
        self.columns = [c for c in METRICS if c in self.sources]
        self._uuid_order: dict[str, int] = {}

    def _check(self) -> None:
        expected = (f"{TIMESTAMP!r} and a power field "
                    "(power.draw, power.draw.average or power.draw.instant)")
        if TIMESTAMP not in self.fields:
            raise InputError(f"no 'timestamp' field in {self.fields}; expected {expected}",
                             path=self.path, line=1)
        if not any(FIELD_MAP.get(f) in MEASURED_POWER for f in self.fields):
            raise InputError(f"no power field in {self.fields}; expected {expected}",
                             path=self.path, line=1)

    def check_units(self, units: Sequence[str | None]) -> None:
        """Header units (``[W]``) must be the ones the conversion expects."""
        for name, unit in zip(self.fields, units, strict=True):
            spec = SPECS.get(name)
            if spec is not None and unit is not None and unit != spec.unit:
                raise InputError(f"field {name} is in [{unit}], expected [{spec.unit}]",
                                 path=self.path, line=1)

    def convert(self, rows: list[list[str]], lines: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of printed values (file order) -> ``t``, ``device``, metric and identity arrays."""
        cols = np.array(rows, dtype=object).reshape(len(rows), len(self.fields)).T
        out: dict[str, np.ndarray] = {T: self._times(cols, lines), DEVICE: self._devices(cols, lines)}
        for column in self.columns:
            merged: np.ndarray | None = None
            for i in self.sources[column]:
                values = self._metric(i, cols[i], lines)
                merged = values if merged is None else np.where(np.isnan(merged), values, merged)
            assert merged is not None
            out[column] = merged
        for i, name in enumerate(self.fields):
            key = IDENTITY.get(name)
            if key is not None and key not in out:
                out[key] = cols[i]
        return out

    def _times(self, cols: np.ndarray, lines: np.ndarray) -> np.ndarray:
        stamps = cols[self.fields.index(TIMESTAMP)]
        t = to_unix(stamps, self.utc_offset_h)
        bad = np.flatnonzero(np.isnan(t))
        if len(bad):
            raise InputError(f"timestamp {stamps[bad[0]]!r} is not YYYY/MM/DD HH:MM:SS.mmm",
                             path=self.path, line=int(lines[bad[0]]))
        return t

    def _metric(self, i: int, values: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """Convert once per distinct value (fast on long captures), then spread to the rows."""
        spec, name = SPECS[self.fields[i]], self.fields[i]
        codes, uniques = pd.factorize(values)
        table = np.empty(len(uniques), dtype=np.float64)
        for j, v in enumerate(uniques):  # in order of first appearance: the first bad value is reported
            try:
                table[j] = spec.convert(v)
            except ValueError as e:
                raise InputError(f"{name} is {v!r}: {e}", path=self.path,
                                 line=int(lines[np.argmax(codes == j)])) from None
        return table[codes]

    def _devices(self, cols: np.ndarray, lines: np.ndarray) -> np.ndarray:
        if INDEX in self.fields:
            codes, uniques = pd.factorize(cols[self.fields.index(INDEX)])
            for j, v in enumerate(uniques):
                if not (v.isascii() and v.isdigit()):  # "²".isdigit() is True, int("²") fails
                    raise InputError(f"index is {v!r}, expected a GPU index (0, 1, ...)",
                                     path=self.path, line=int(lines[np.argmax(codes == j)]))
            return np.array([f"gpu:{int(v)}" for v in uniques], dtype=object)[codes]
        uuid_at = next((i for i, f in enumerate(self.fields) if IDENTITY.get(f) == "uuid"), None)
        if uuid_at is None:
            return np.full(len(lines), "gpu:0", dtype=object)
        for u in pd.unique(cols[uuid_at]):
            self._uuid_order.setdefault(u, len(self._uuid_order))
        return np.array([f"gpu:{self._uuid_order[u]}" for u in cols[uuid_at]], dtype=object)


def _collect_devices(devices: dict[str, dict], arrays: dict[str, np.ndarray]) -> None:
    """Fill ``devices`` with the first known name, uuid and power limit of each device."""
    dev = arrays[DEVICE]
    for d in pd.unique(dev):
        entry = devices.setdefault(d, {})
        rows = np.flatnonzero(dev == d)
        for key in ("name", "uuid"):
            if key in arrays and key not in entry:
                known = [v for v in arrays[key][rows] if not is_missing(v)]
                if known:
                    entry[key] = known[0]
        if "power_limit_w" in arrays and "power_limit_w" not in entry:
            limits = arrays["power_limit_w"][rows]
            limits = limits[~np.isnan(limits)]
            if len(limits):
                entry["power_limit_w"] = float(limits[0])


# --- public API ---------------------------------------------------------------------------------

class LineParser:
    """Parse nvidia-smi CSV one line at a time (a live ``nvidia-smi ... -lms 100`` stdout).

    ``fields`` is the ``--query-gpu`` list, in order. Header lines and blank lines give None.
    Line numbers in errors count the lines given to :meth:`parse`. :attr:`devices` collects
    name, uuid and power limit per device as lines arrive.
    """

    def __init__(self, fields: Sequence[str], utc_offset_h: float = 0.0, *,
                 source: str | None = None) -> None:
        self._layout = _Layout(fields, source, utc_offset_h)
        self.fields = self._layout.fields
        self.source = source
        self.devices: dict[str, dict] = {}
        self._line = 0

    def parse(self, line: str) -> dict | None:
        self._line += 1
        text = line.strip()
        if not text:
            return None
        values = split_line(text)
        if is_header(values):
            return None
        _check_count(values, len(self.fields), self.source, self._line)
        arrays = self._layout.convert([values], np.array([self._line]))
        _collect_devices(self.devices, arrays)
        sample = {T: float(arrays[T][0]), DEVICE: str(arrays[DEVICE][0])}
        sample.update({c: float(arrays[c][0]) for c in self._layout.columns})
        return sample


def _check_count(values: Sequence[str], n: int, path: str | None, line: int) -> None:
    if len(values) != n:
        raise InputError(f"{len(values)} values but {n} fields "
                         "(expected one value per --query-gpu field, in order)", path=path, line=line)


def _numbered_lines(f: Any) -> Iterator[tuple[int, str]]:
    """Non-blank lines of an open text file, stripped, with their 1-based line numbers."""
    for n, line in enumerate(f, 1):
        text = line.strip()
        if text:
            yield n, text


def _layout_for(first: list[str], fields: Sequence[str] | None, path: str,
                utc_offset_h: float, warnings: list[str]) -> tuple[_Layout, bool]:
    """The layout from the header line, or from ``fields`` when the file has none."""
    if is_header(first):
        names, units = zip(*(header_name(v) for v in first), strict=True)
        layout = _Layout(names, path, utc_offset_h)
        layout.check_units(units)
        if fields is not None and [f.strip() for f in fields] != list(names):
            warnings.append(f"{path}: the header's fields differ from the fields given; "
                            "used the header's")
        return layout, True
    if fields is None:
        raise InputError("no header line (nvidia-smi ran with --format=csv,noheader): pass --fields "
                         "with the --query-gpu field list", path=path, line=1)
    return _Layout(fields, path, utc_offset_h), False


def parse_csv(path: str | Path, *, fields: list[str] | None = None,
              utc_offset_h: float = 0.0) -> ParseResult:
    """Read a ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`` file, streamed."""
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected nvidia-smi --query-gpu CSV output)", path=str(p))
    check_utc_offset(utc_offset_h)
    try:
        with p.open(encoding="utf-8", newline=None) as f:
            return _parse_stream(_numbered_lines(f), fields, str(p), utc_offset_h, _count_lines(p))
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (expected nvidia-smi --query-gpu CSV output)",
                         path=str(p)) from None


def _count_lines(p: Path) -> int:
    """Lines in the file (an upper bound on its data rows), counted in 1 MiB blocks of bytes."""
    lf = cr = 0
    with p.open("rb") as f:
        while block := f.read(1 << 20):
            lf += block.count(b"\n")
            cr += block.count(b"\r")  # a lone CR ends a line in text mode too
    return max(lf, cr) + 1  # CRLF counted once; mixed endings may need more: _Columns grows then


class _Columns:
    """Converted chunks, kept as float64 arrays (and device codes) until the end. Whether the rows
    come in order (time, then device) and how often a GPU's time went backwards are worked out
    chunk by chunk, so no array the length of the file is needed for it."""

    def __init__(self, columns: list[str], capacity: int) -> None:
        # Allocated once, at most one row per line of the file (counted first): no list of chunks
        # to concatenate at the end, which would hold the result twice.
        self.arrays: dict[str, np.ndarray] = {c: np.empty(capacity, dtype=np.float64) for c in (T, *columns)}
        self.code_array = np.empty(capacity, dtype=np.int32)
        self.n = 0
        self.names: dict[str, int] = {}
        self.in_order = True
        self.backwards = 0
        self._last_t: dict[int, float] = {}
        self._prev: tuple[float, str] | None = None

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        k = len(arrays[T])
        if self.n + k > len(self.code_array):  # more rows than lines counted (mixed line endings)
            size = max(2 * len(self.code_array), self.n + k)
            self.arrays = {c: np.resize(a, size) for c, a in self.arrays.items()}
            self.code_array = np.resize(self.code_array, size)
        for c, out in self.arrays.items():
            out[self.n:self.n + k] = arrays[c]
        dev = arrays[DEVICE].astype(str)
        uniq, inverse = np.unique(dev, return_inverse=True)
        table = np.array([self.names.setdefault(str(u), len(self.names)) for u in uniq], dtype=np.int32)
        codes = table[inverse].astype(np.int32)
        self.code_array[self.n:self.n + k] = codes
        self.n += k
        t = np.asarray(arrays[T], dtype=np.float64)
        for code in np.unique(codes):
            td = t[codes == code]
            last = self._last_t.get(int(code), -np.inf)
            self.backwards += int((np.diff(td) < 0).sum()) + int(td[0] < last)
            self._last_t[int(code)] = float(td[-1])
        if self.in_order and len(t):
            if self._prev is not None:
                t = np.concatenate([[self._prev[0]], t])
                dev = np.concatenate([np.array([self._prev[1]], dtype=dev.dtype), dev])
            dt = np.diff(t)
            ties = dt == 0
            self.in_order = not (dt < 0).any() and bool((dev[1:][ties] > dev[:-1][ties]).all())
            self._prev = (float(t[-1]), str(dev[-1]))

    def take(self, c: str) -> np.ndarray:
        return self.arrays.pop(c)[:self.n]

    @property
    def codes(self) -> np.ndarray:
        return self.code_array[:self.n]


def _parse_stream(lines: Iterator[tuple[int, str]], fields: Sequence[str] | None, path: str,
                  utc_offset_h: float, capacity: int) -> ParseResult:
    first = next(lines, None)
    if first is None:
        raise InputError("empty file (expected nvidia-smi --query-gpu CSV output)", path=path)
    warnings: list[str] = []
    layout, has_header = _layout_for(split_line(first[1]), fields, path, utc_offset_h, warnings)
    n = len(layout.fields)
    store = _Columns(layout.columns, capacity)
    devices: dict[str, dict] = {}
    rows: list[list[str]] = []
    numbers: list[int] = []

    def flush() -> None:
        if rows:
            arrays = layout.convert(rows, np.array(numbers))
            _collect_devices(devices, arrays)
            store.add(arrays)
            rows.clear()
            numbers.clear()

    pending = None if has_header else first
    for item in lines:
        if pending is not None:
            _take_row(pending, n, path, rows, numbers, last=False)
            if len(rows) >= CHUNK_LINES:
                flush()
        pending = item
    if pending is not None:
        _take_row(pending, n, path, rows, numbers, last=True, warnings=warnings)
    flush()
    if not store.n:
        raise InputError("no samples in file (expected nvidia-smi --query-gpu CSV lines)", path=path)
    return ParseResult(_frame(store, layout.columns, path, warnings), devices, warnings)


def _take_row(item: tuple[int, str], n: int, path: str, rows: list[list[str]], numbers: list[int], *,
              last: bool, warnings: list[str] | None = None) -> None:
    number, text = item
    values = split_line(text)
    if MAYBE_HEADER_RE.search(text) and is_header(values):
        return
    if last and len(values) < n and warnings is not None:
        warnings.append(f"{path}:{number}: last line has {len(values)} of {n} values "
                        "(cut off when nvidia-smi stopped); skipped")
        return
    _check_count(values, n, path, number)
    rows.append(values)
    numbers.append(number)


def _frame(store: _Columns, columns: list[str], path: str, warnings: list[str]) -> pd.DataFrame:
    """The samples frame, sorted by time then device; a GPU's timestamps going backwards and its
    duplicate timestamps (first row kept) are said in ``warnings``."""
    name = Path(path).name
    codes = store.codes
    t = store.take(T)
    names = list(store.names)
    if store.backwards:
        warnings.append(f"{name}: timestamps went backwards {store.backwards} time(s) (a GPU's rows out of "
                        "order); rows sorted by time")
    order = None
    # each device's place in name order (the sort's key and the categorical's code)
    rank = np.argsort(np.argsort(np.array(names, dtype=object))).astype(np.int8 if len(names) < 128 else np.int32)
    if not store.in_order:
        order = np.lexsort((rank[codes], t))
        t, codes = t[order], codes[order]
    dup = np.zeros(len(t), dtype=bool)
    dup[1:] = (t[1:] == t[:-1]) & (codes[1:] == codes[:-1])
    any_dup = bool(dup.any())
    cols: dict[str, np.ndarray] = {}
    conflicting = np.zeros(len(t), dtype=bool) if any_dup else None
    for c in columns:  # one column at a time: the text's arrays are freed as the frame's are made
        v = store.take(c)
        if order is not None:
            v = v[order]
        if conflicting is not None:
            a, b = v[1:], v[:-1]
            conflicting[1:] |= dup[1:] & ~((a == b) | (np.isnan(a) & np.isnan(b)))
        cols[c] = v
    del order
    if any_dup:
        assert conflicting is not None
        n_conf = int(conflicting.sum())
        warnings.append(f"{name}: {int(dup.sum())} duplicate timestamp(s) of a GPU"
                        + (f", {n_conf} with conflicting values" if n_conf else "")
                        + "; the first row of each kept")
        keep = ~dup
        t, codes = t[keep], codes[keep]
        for k in cols:  # one column at a time (no second copy of the frame)
            cols[k] = cols[k][keep]
    # a categorical (one byte per row, not a string), its categories in name order whatever order the
    # chunks met the devices in; the frame is made of these arrays, not copies
    device = pd.Categorical.from_codes(rank[codes], categories=sorted(names))
    out: dict[str, Any] = {T: t, DEVICE: device}
    del codes
    out.update(cols)
    del cols
    return pd.DataFrame(out, copy=False)


def sniff(path: str | Path) -> bool:
    """True if the file looks like nvidia-smi --query-gpu CSV (with or without a header)."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    first = next((s.strip() for s in head.splitlines() if s.strip()), "")
    values = split_line(first)
    if is_header(values):
        return TIMESTAMP in (header_name(v)[0] for v in values)
    return len(values) > 1 and any(TS_RE.match(v) for v in values)

"""The ``nvml-trace-csv`` format: an in-process NVML poll, one row per sample.

Columns (``tests/fixtures/nvidia-h100/nvml_samples_10ms.csv``, written by
``tools/gpu_capture.py``): ``t`` (before the reads), ``power_usage_mw``, ``power_instant_mw``,
``power_average_mw``, ``energy_mj``, ``util_gpu``, ``util_mem``, ``clock_sm_mhz``,
``clock_mem_mhz``, ``temp_c``, ``clocks_event_reasons``, ``mem_used_b``, ``t_end`` (after the reads).
An optional ``gpu`` (or ``index``) column holds the NVML index for multi-GPU traces.
A sidecar gives ``name``, ``uuid`` and ``power_limit_mw`` (``enforced_limit_mw``): the one named by
the caller, else ``<trace>.info.json`` (read strictly: errors name it), else an ``info.json`` beside
the CSV **only if it has that shape** (a JSON object with at least one of those keys, of the right
type); an unrelated ``info.json`` is ignored, said in :attr:`NvmlTrace.warnings`.

Values are checked: ``t`` and ``energy_mj`` present and finite on every row, ``gpu`` a GPU index,
no infinite or negative readings (one-line :class:`InputError` naming the line and field).
Timestamps going backwards are sorted, and duplicate timestamps of a GPU keep their first row:
both said in :attr:`NvmlTrace.warnings`.

Values stay in NVML's own units here: the replay backend serves them to the NVML collector,
which converts them exactly as it converts a real GPU's answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

REQUIRED = ("t", "energy_mj")
KNOWN = (
    "t", "t_end", "gpu", "index", "power_usage_mw", "power_instant_mw", "power_average_mw",
    "energy_mj", "util_gpu", "util_mem", "clock_sm_mhz", "clock_mem_mhz", "temp_c",
    "clocks_event_reasons", "mem_used_b",
)


@dataclass
class NvmlTrace:
    """One trace: per-GPU arrays in NVML units, sorted by time."""

    path: str
    #: gpu index -> DataFrame with column ``t`` (stamp of the reading) and NVML-unit columns.
    gpus: dict[int, pd.DataFrame]
    info: dict = field(default_factory=dict)
    #: what was read with a caveat (sorted timestamps, duplicates, an ignored sidecar), one line each
    warnings: list[str] = field(default_factory=list)

    @property
    def t_first(self) -> float:
        return min(float(df["t"].iloc[0]) for df in self.gpus.values())

    @property
    def t_last(self) -> float:
        return max(float(df["t"].iloc[-1]) for df in self.gpus.values())


#: sidecar keys and the types they must have
SIDECAR_KEYS: dict[str, tuple[type, ...]] = {"name": (str,), "uuid": (str,), "power_limit_mw": (int, float),
                                             "enforced_limit_mw": (int, float)}
#: columns that must be present and finite on every row (when in the header)
_NOT_EMPTY = ("t", "energy_mj", "gpu", "index")
#: readings that cannot be negative (energy counters, power, utilisation, clocks, memory)
_NON_NEGATIVE = ("energy_mj", "power_usage_mw", "power_instant_mw", "power_average_mw", "util_gpu", "util_mem",
                 "clock_sm_mhz", "clock_mem_mhz", "mem_used_b", "clocks_event_reasons")
MAX_GPUS = 1024


def read_nvml_trace(path: str | Path, *, sidecar: str | Path | None = None) -> NvmlTrace:
    """Read an ``nvml-trace-csv`` file (and its sidecar: see the module's docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected an NVML trace CSV)", path=str(p))
    try:
        with p.open(encoding="utf-8") as f:
            header = [c.strip() for c in f.readline().split(",")]
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (expected an NVML trace CSV)", path=str(p)) from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(
            f"not an nvml-trace-csv file: header lacks {', '.join(missing)} "
            f"(expected columns such as {', '.join(KNOWN[:6])}, ...)",
            path=str(p), line=1,
        )
    if len(set(header)) != len(header):
        dup = next(c for c in header if header.count(c) > 1)
        raise InputError(f"column {dup!r} appears twice in the header", path=str(p), line=1)
    try:
        df = pd.read_csv(p, dtype=float, on_bad_lines="error", engine="c")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"malformed nvml-trace-csv: {str(e).splitlines()[0]}", path=str(p)) from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputError("no samples in trace", path=str(p))
    _check_values(df, str(p))
    warnings: list[str] = []
    # ``t`` (taken just before the reads) stamps the reading, as in the NVML collector: the
    # energy counter is read first and that call alone takes ~2.8 ms.
    gpu_col = "gpu" if "gpu" in df.columns else ("index" if "index" in df.columns else None)
    gpus: dict[int, pd.DataFrame] = {}
    if gpu_col is None:
        gpus[0] = _ordered(df, p.name, "gpu 0", warnings)
    else:
        for idx, g in df.groupby(gpu_col):
            gpus[int(idx)] = _ordered(g, p.name, f"gpu {int(idx)}", warnings)
    info = _read_sidecar(p, sidecar, warnings)
    return NvmlTrace(path=str(p), gpus=gpus, info=info, warnings=warnings)


def _check_values(df: pd.DataFrame, path: str) -> None:
    """One-line errors for values no NVML poll produces: empty or infinite ``t``/``energy_mj``/``gpu``,
    infinite or negative readings, a GPU index that is not a small non-negative integer."""
    for col in df.columns:
        v = df[col].to_numpy(dtype=float)
        if col in _NOT_EMPTY:
            bad = ~np.isfinite(v)
            if bad.any():
                i = int(np.argmax(bad))
                what = "empty" if np.isnan(v[i]) else f"{v[i]:g}"
                raise InputError(f"{col} is {what}: expected a finite number on every row", path=path,
                                 line=i + 2)
        else:
            bad = np.isinf(v)
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(f"{col} is {v[i]:g}: expected a finite number or an empty value", path=path,
                                 line=i + 2)
        if col in _NON_NEGATIVE:
            neg = v < 0
            if neg.any():
                i = int(np.argmax(neg))
                raise InputError(f"{col} is {v[i]:g}: NVML readings are never negative", path=path, line=i + 2)
        if col in ("gpu", "index"):
            bad = (v < 0) | (v >= MAX_GPUS) | (v != np.floor(v))
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(f"{col} is {v[i]:g}: expected a GPU index (0 to {MAX_GPUS - 1})", path=path,
                                 line=i + 2)


def _ordered(g: pd.DataFrame, name: str, what: str, warnings: list[str]) -> pd.DataFrame:
    """One GPU's rows by time. Timestamps going backwards are sorted and duplicate timestamps keep
    their first row; each is said in ``warnings`` (conflicting duplicates, with how many)."""
    t = g["t"].to_numpy(dtype=float)
    back = int((np.diff(t) < 0).sum()) if len(t) > 1 else 0
    if back:
        warnings.append(f"{name}: {what}: timestamps went backwards {back} time(s); rows sorted by time")
    g = g.sort_values("t", kind="stable")
    dup = g["t"].duplicated(keep="first")
    if dup.any():
        whole = g.duplicated(keep="first")  # identical rows: harmless repeats
        conflicting = int((dup & ~whole).sum())
        warnings.append(f"{name}: {what}: {int(dup.sum())} duplicate timestamp(s)"
                        + (f", {conflicting} with conflicting values" if conflicting else "")
                        + "; the first row of each kept")
        g = g[~dup]
    return g.reset_index(drop=True)


def _read_sidecar(p: Path, named: str | Path | None, warnings: list[str]) -> dict:
    """The trace's sidecar: the named one, or ``<trace>.info.json`` (both strict), or an
    ``info.json`` beside it that has the expected shape (else ignored, with a warning)."""
    own = p.with_name(p.stem + ".info.json")
    strict = Path(named) if named is not None else (own if own.is_file() else None)
    path = strict or p.with_name("info.json")
    if strict is None and not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("sidecar not found (expected a JSON object with name, uuid, power_limit_mw)",
                         path=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as e:
        if strict is None:
            warnings.append(f"{path.name} beside the trace is not JSON; ignored")
            return {}
        raise InputError(f"not a JSON sidecar ({type(e).__name__})", path=str(path)) from None
    problem = _sidecar_problem(info)
    if problem:
        if strict is None:
            warnings.append(f"{path.name} beside the trace is not an NVML trace sidecar ({problem}); ignored")
            return {}
        raise InputError(f"not an NVML trace sidecar: {problem}", path=str(path))
    return {k: v for k, v in info.items() if k in SIDECAR_KEYS} | {
        k: v for k, v in info.items() if k not in SIDECAR_KEYS and isinstance(v, (str, int, float, bool))}


def _sidecar_problem(info: object) -> str | None:
    """Why ``info`` is not a sidecar (None when it is): an object with at least one known key,
    each of the right type (finite, positive power limits)."""
    from . import finite_number

    expected = f"expected a JSON object with {', '.join(SIDECAR_KEYS)}"
    if not isinstance(info, dict):
        return f"{type(info).__name__}, {expected}"
    if not any(k in info for k in SIDECAR_KEYS):
        return expected
    for k, types in SIDECAR_KEYS.items():
        if k not in info:
            continue
        v = info[k]
        if not isinstance(v, types) or isinstance(v, bool):
            return f"{k} is {type(v).__name__}, expected {types[0].__name__}"
        if types[0] is not str and not (finite_number(v) and 0 < v < 1e10):
            return f"{k} is {str(v)[:40]}, expected a positive power limit in mW"
    return None

"""The ``nvml-trace-csv`` format: an in-process NVML poll, one row per sample.

Columns (``tests/fixtures/nvidia-h100/nvml_samples_10ms.csv``, written by
``tools/gpu_capture.py``): ``t`` (before the reads), ``power_usage_mw``, ``power_instant_mw``,
``power_average_mw``, ``energy_mj``, ``util_gpu``, ``util_mem``, ``clock_sm_mhz``,
``clock_mem_mhz``, ``temp_c``, ``clocks_event_reasons``, ``mem_used_b``, ``t_end`` (after the reads).
An optional ``gpu`` (or ``index``) column holds the NVML index for multi-GPU traces.
Optional ``info.json`` beside the CSV gives ``name``, ``uuid`` and ``power_limit_mw``.

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

    @property
    def t_first(self) -> float:
        return min(float(df["t"].iloc[0]) for df in self.gpus.values())

    @property
    def t_last(self) -> float:
        return max(float(df["t"].iloc[-1]) for df in self.gpus.values())


def read_nvml_trace(path: str | Path) -> NvmlTrace:
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
    try:
        df = pd.read_csv(p, dtype=float, on_bad_lines="error", engine="c")
    except (ValueError, pd.errors.ParserError) as e:
        raise InputError(f"malformed nvml-trace-csv: {str(e).splitlines()[0]}", path=str(p)) from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputError("no samples in trace", path=str(p))
    bad = df["t"].isna()
    if bad.any():
        raise InputError("missing timestamp 't'", path=str(p), line=int(np.argmax(bad.to_numpy())) + 2)
    # ``t`` (taken just before the reads) stamps the reading, as in the NVML collector: the
    # energy counter is read first and that call alone takes ~2.8 ms.
    gpu_col = "gpu" if "gpu" in df.columns else ("index" if "index" in df.columns else None)
    gpus: dict[int, pd.DataFrame] = {}
    if gpu_col is None:
        gpus[0] = df.sort_values("t", kind="stable").reset_index(drop=True)
    else:
        for idx, g in df.groupby(gpu_col):
            gpus[int(idx)] = g.sort_values("t", kind="stable").reset_index(drop=True)
    info: dict = {}
    info_path = p.with_name("info.json")
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON: {e.msg}", path=str(info_path), line=e.lineno) from None
    return NvmlTrace(path=str(p), gpus=gpus, info=info)

"""The ``gpm-csv`` format: NVML GPM (GPU Performance Monitoring) windows, one row per window.

Columns (``tests/fixtures/nvidia-h100-gpm/gpm_samples_500ms.csv``, written by
``tools/gpu_capture_gpm.py``): ``t_start``, ``t_end`` (wall clock Unix seconds: the two
``nvmlGpmSampleGet`` calls that bound the window), then one column per GPM metric, named as the
lower-cased suffix of its NVML constant (``NVML_GPM_METRIC_SM_UTIL`` -> ``sm_util``): ``sm_util``,
``sm_occupancy``, ``any_tensor_util``, ``dram_bw_util``, ``fp16_util``, ``fp32_util``,
``graphics_util`` (percent) and ``pcie_tx_per_sec``, ``pcie_rx_per_sec``,
``nvlink_total_tx_per_sec``, ``nvlink_total_rx_per_sec`` (MiB/s, as NVML gives them: nvml.h
documents the ``*_PER_SEC`` GPM metrics in MiB/s; stored in the schema's MB/s). An optional ``gpu`` (or
``index``) column holds the NVML index for multi-GPU captures. Empty cells (a metric the device
does not support) become NaN. Other columns are ignored.

Output: the samples table of :mod:`wattprof.schema`. Samples have only a time ``t``, so each GPM
window becomes one sample at the window's **midpoint**: a GPM value at ``t`` is the mean over the
window ``[t - d/2, t + d/2]`` (d = ``t_end - t_start``, about 0.5 s here), i.e. over the window
ending at ``t + d/2``. Analysis that holds each sample over the half-way points between
neighbouring samples (:mod:`wattprof.analysis.bottleneck`) therefore recovers the GPM windows
exactly when they are contiguous. Metrics without a schema column (fp16/fp32/graphics util) are
dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..schema import DEVICE, T

#: NVML GPM metric (the suffix of ``pynvml.NVML_GPM_METRIC_<NAME>``) -> schema column. Percent
#: metrics stay percent; ``*_PER_SEC`` metrics are MiB/s in NVML and the capture, MB/s in the
#: schema (:data:`GPM_SCALE`). The live GPM
#: collector queries ``getattr(pynvml, "NVML_GPM_METRIC_" + name)`` for each key; the gpm-csv
#: column of a metric is ``name.lower()``.
GPM_COLUMN_MAP: dict[str, str] = {
    "SM_UTIL": "sm_active_pct",
    "SM_OCCUPANCY": "sm_occupancy_pct",
    "ANY_TENSOR_UTIL": "tensor_active_pct",
    "DRAM_BW_UTIL": "dram_active_pct",
    "PCIE_TX_PER_SEC": "pcie_tx_mbps",
    "PCIE_RX_PER_SEC": "pcie_rx_mbps",
    "NVLINK_TOTAL_TX_PER_SEC": "nvlink_tx_mbps",
    "NVLINK_TOTAL_RX_PER_SEC": "nvlink_rx_mbps",
}

#: Schema column -> factor from NVML's unit to the schema's: NVML gives the ``*_PER_SEC`` GPM
#: metrics in MiB/s (nvml.h), the schema stores MB/s (10^6 bytes/s): 1 MiB/s = 1.048576 MB/s.
MIB_PER_S_IN_MB_PER_S = 1.048576
GPM_SCALE: dict[str, float] = {col: MIB_PER_S_IN_MB_PER_S for name, col in GPM_COLUMN_MAP.items()
                               if name.endswith("_PER_SEC")}

#: CSV column -> schema column.
CSV_COLUMN_MAP: dict[str, str] = {k.lower(): v for k, v in GPM_COLUMN_MAP.items()}
TIME_COLUMNS = ("t_start", "t_end")
GPU_COLUMNS = ("gpu", "index")


def _header(p: Path) -> list[str]:
    with p.open(encoding="utf-8", errors="replace") as f:
        return [c.strip() for c in f.readline().strip().split(",")]


def sniff(path: str | Path) -> bool:
    """True when ``path`` looks like a gpm-csv file (header with window bounds and a GPM metric)."""
    try:
        header = _header(Path(path))
    except OSError:
        return False
    return all(c in header for c in TIME_COLUMNS) and any(c in CSV_COLUMN_MAP for c in header)


def read_gpm_csv(path: str | Path, device: str = "gpu:0") -> pd.DataFrame:
    """Read a gpm-csv file into samples: ``t`` (window midpoint), ``device`` and the schema
    columns of :data:`GPM_COLUMN_MAP` that the file has (float64, NaN where empty), sorted by
    ``t``. ``device`` names the GPU unless the file has a ``gpu``/``index`` column (then
    ``gpu:<n>``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found (expected a gpm-csv file)", path=str(p))
    header = _header(p)
    missing = [c for c in TIME_COLUMNS if c not in header]
    metrics = [c for c in header if c in CSV_COLUMN_MAP]
    if missing or not metrics:
        raise InputError(
            "not a gpm-csv file: expected a header with t_start, t_end and GPM metrics such as "
            f"{', '.join(list(CSV_COLUMN_MAP)[:4])}; got {','.join(header)[:120]!r}",
            path=str(p), line=1,
        )
    try:
        raw = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True,
                          on_bad_lines="error", engine="c")
    except (ValueError, pd.errors.ParserError) as e:
        raise InputError(f"malformed gpm-csv: {str(e).splitlines()[0]}", path=str(p)) from None
    raw.columns = [str(c).strip() for c in raw.columns]  # as _header() reads them (tabs too)
    if raw.empty:
        raise InputError("no GPM windows in file (expected one row per window)", path=str(p))
    gpu_col = next((c for c in GPU_COLUMNS if c in raw.columns), None)
    numeric = {}
    for col in [*TIME_COLUMNS, *metrics, *([gpu_col] if gpu_col else [])]:
        text = raw[col].str.strip()
        values = pd.to_numeric(text, errors="coerce").astype("float64")
        empty = text.eq("") | text.str.upper().isin(["NAN", "[N/A]", "N/A"])
        bad = (values.isna() & ~empty) | ~np.isfinite(values.fillna(0.0))
        if col in TIME_COLUMNS or col == gpu_col:
            bad |= values.isna()
        else:
            bad |= values < 0
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            expect = "a finite number" if col in TIME_COLUMNS or col == gpu_col else "a number >= 0 or empty"
            raise InputError(f"column {col!r} is {raw[col].iloc[i]!r}, expected {expect}",
                             path=str(p), line=i + 2)
        numeric[col] = values.to_numpy()
    t0, t1 = numeric["t_start"], numeric["t_end"]
    back = t1 < t0
    if back.any():
        i = int(np.argmax(back))
        raise InputError(f"t_end ({t1[i]}) is before t_start ({t0[i]})", path=str(p), line=i + 2)
    out = pd.DataFrame({T: (t0 + t1) / 2.0})
    if gpu_col:
        out[DEVICE] = "gpu:" + pd.Series(numeric[gpu_col]).astype("int64").astype(str)
    else:
        out[DEVICE] = device
    for col in metrics:
        out[CSV_COLUMN_MAP[col]] = numeric[col] * GPM_SCALE.get(CSV_COLUMN_MAP[col], 1.0)
    return out.sort_values([DEVICE, T], kind="stable").reset_index(drop=True)

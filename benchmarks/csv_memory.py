"""Peak memory of the nvidia-smi CSV reader on large captures (issue 12, item 10).

Writes a ``nvidia-smi --query-gpu=... --format=csv -lms 100`` file of the requested size from the
real H100 capture (its 21 fields, units included): 8 GPUs, rows 100 ms apart, values cycling
through the capture. Then reads it with :func:`wattprof.formats.nvidia_smi_csv.parse_csv` in a
fresh process and reports that process's peak resident memory (``ru_maxrss``), its memory after
the imports alone (the interpreter, pandas and pyarrow), and the time. Target: peak <= 2x the file
and <= 1 GB for a 2 GB file.

``--import`` also times the whole ``wattprof import`` of each file in another fresh process
(:func:`wattprof.importer.import_samples` into a new run: the reader, then the samples written to
Parquet): ``import_peak_bytes`` and ``import_seconds`` (issue 19: imports in bounded memory).

``--nvml-rows N`` adds the import of an NVML trace CSV (``nvml-trace-csv``) of N rows per GPU x 8
GPUs made from the real H100 trace (each GPU at another offset into it, counters kept rising),
replayed through the NVML collector as ``wattprof import`` does.

    python benchmarks/csv_memory.py [--mb 50 200 2048] [--import] [--nvml-rows 50000] [--keep DIR]
    # 2048 MB: ~15 min on 2 loaded cores; 50,000 NVML rows: ~4 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import table, write_json  # noqa: E402

FIXTURES = Path(os.environ.get("WATTPROF_FIXTURES", HERE.parent / "tests" / "fixtures"))
GPUS = 8

_CHILD = r"""
import json, resource, sys, time
import numpy, pandas, pyarrow  # noqa: F401 - what any reader process holds anyway
from wattprof.formats.nvidia_smi_csv import parse_csv
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
r = parse_csv(sys.argv[1])
took = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": len(r.samples), "columns": len(r.samples.columns), "seconds": took,
                  "base_bytes": base, "peak_bytes": peak,
                  "frame_bytes": int(r.samples.memory_usage(index=True, deep=False).sum())}))
"""


_IMPORT_CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy, pandas, pyarrow  # noqa: F401
from wattprof.importer import import_samples, open_or_create, transaction
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with tempfile.TemporaryDirectory() as tmp:
    run = Path(tmp) / "run"
    t0 = time.perf_counter()
    with transaction(run):
        r = import_samples(open_or_create(run, name="import"), sys.argv[1])
    took = time.perf_counter() - t0
    parquet = sum(p.stat().st_size for p in run.glob("samples-*.parquet"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"import_rows": r.rows, "import_seconds": took, "import_peak_bytes": peak,
                  "import_base_bytes": base, "parquet_bytes": parquet}))
"""


def make_csv(path: Path, size: int) -> int:
    """Write about ``size`` bytes of nvidia-smi CSV; returns the number of data rows."""
    src = (FIXTURES / "nvidia-h100" / "nvidia-smi-query-100ms.csv").read_text().splitlines()
    header, body = src[0], src[1:]
    tails = [line.split(", ", 2)[2] for line in body]  # after timestamp and index
    start = dt.datetime(2026, 11, 22, 11, 25, 40)
    rows = 0
    with path.open("w", encoding="utf-8") as f:
        f.write(header + "\n")
        written = len(header) + 1
        k = 0
        while written < size:
            stamp = (start + dt.timedelta(milliseconds=100 * k)).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
            tail = tails[k % len(tails)]
            block = "".join(f"{stamp}, {g}, {tail}\n" for g in range(GPUS))
            f.write(block)
            written += len(block)
            rows += GPUS
            k += 1
    return rows


def make_nvml_trace(path: Path, rows: int) -> int:
    """An ``nvml-trace-csv`` of ``rows`` rows per GPU x 8 GPUs; returns the number of data rows."""
    import numpy as np
    import pandas as pd

    src = pd.read_csv(FIXTURES / "nvidia-h100" / "nvml_samples_10ms.csv")
    m = len(src)
    span = float(src["t"].iloc[-1] - src["t"].iloc[0]) + 0.01
    rise = float(src["energy_mj"].iloc[-1] - src["energy_mj"].iloc[0]) + 5000.0
    loops = np.arange(rows) // m
    parts = []
    for g in range(GPUS):
        d = src.iloc[(np.arange(rows) + 37 * g) % m].reset_index(drop=True)
        d = d.assign(t=d["t"] + loops * span + g * 1e-4, t_end=d["t_end"] + loops * span + g * 1e-4,
                     energy_mj=d["energy_mj"] + loops * rise)
        d.insert(0, "gpu", g)
        parts.append(d)
    pd.concat(parts).sort_values(["t", "gpu"], kind="stable").to_csv(path, index=False)
    return rows * GPUS


def measure(path: Path, child: str = _CHILD) -> dict:
    out = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, nargs="*", default=[200.0], help="file sizes in MB (default 200; none: no CSV)")
    ap.add_argument("--import", dest="whole_import", action="store_true",
                    help="also time the whole import of each file into a run (reader + Parquet)")
    ap.add_argument("--nvml-rows", type=int, default=0,
                    help="also import an NVML trace of this many rows per GPU (x 8 GPUs); 0: none")
    ap.add_argument("--keep", help="directory for the generated files (default: a temporary one, removed)")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/csv_memory.json)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="wattprof-csv-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for mb in args.mb:
        path = work / f"smi-{mb:g}mb.csv"
        t0 = time.perf_counter()
        rows = make_csv(path, int(mb * 1e6))
        size = path.stat().st_size
        print(f"  wrote {path.name}: {size / 1e6:.0f} MB, {rows:,} rows in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
        m = measure(path)
        if args.whole_import:
            m.update(measure(path, _IMPORT_CHILD))
        results.append({"file_bytes": size, "rows": rows, **m})
        if not args.keep:
            path.unlink()
    if args.nvml_rows:
        path = work / f"nvml-trace-{args.nvml_rows}.csv"
        rows = make_nvml_trace(path, args.nvml_rows)
        m = measure(path, _IMPORT_CHILD)
        results.append({"format": "nvml-trace-csv", "file_bytes": path.stat().st_size, "rows": rows, **m})
        if not args.keep:
            path.unlink()
    if not args.keep:
        work.rmdir()  # the temporary directory too, not only the files
    print(table(["file MB", "rows", "peak RSS MB", "after imports MB", "frame MB", "peak / file", "s", "target"],
                [[f"{r['file_bytes'] / 1e6:.0f}", f"{r['rows']:,}",
                  f"{r['peak_bytes'] / 1e6:.0f}" if "peak_bytes" in r else r.get("error", "?"),
                  f"{r['base_bytes'] / 1e6:.0f}" if "base_bytes" in r else "",
                  f"{r['frame_bytes'] / 1e6:.0f}" if "frame_bytes" in r else "",
                  f"{r['peak_bytes'] / r['file_bytes']:.2f}" if "peak_bytes" in r else "",
                  f"{r['seconds']:.0f}" if "seconds" in r else "",
                  "<= 2x file" + (", <= 1 GB" if r["file_bytes"] >= 1.9e9 else "")]
                 for r in results if r.get("format") != "nvml-trace-csv"]))
    if args.whole_import or args.nvml_rows:
        print(table(["format", "file MB", "rows", "import peak RSS MB", "peak / file", "import s", "Parquet MB"],
                    [[r.get("format", "nvidia-smi-csv"), f"{r['file_bytes'] / 1e6:.0f}", f"{r['rows']:,}",
                      f"{r['import_peak_bytes'] / 1e6:.0f}" if "import_peak_bytes" in r else r.get("error", "?"),
                      f"{r['import_peak_bytes'] / r['file_bytes']:.2f}" if "import_peak_bytes" in r else "",
                      f"{r['import_seconds']:.0f}" if "import_seconds" in r else "",
                      f"{r['parquet_bytes'] / 1e6:.1f}" if "parquet_bytes" in r else ""]
                     for r in results if "import_peak_bytes" in r or "error" in r]))
    path = write_json("csv_memory", {"args": vars(args), "results": results}, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

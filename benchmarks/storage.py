"""Bytes on disk per sample and per stored metric value, and the time to report a 24 h run.

1. **Bytes.** ``--minutes`` (default 10) of 8 GPUs at 10 Hz, made from the real H100 capture
   (``nvml_samples_10ms.csv`` taken every 100 ms, each GPU at another offset into it, stamps with
   0.2 ms of jitter: no two GPUs identical), written the way the recorder writes them: one
   :class:`~wattprof.run.SampleStream` batch per second (live Arrow stream, compressed), then
   finalised to Parquet. A *stored metric value* is a non-null metric cell (the NVML collector's
   GPM columns are null without GPM and not counted; a cell costs bytes whether null or not, so
   both are given).
2. **Time to report.** A synthetic run of ``--hours`` (default 24) x 8 GPUs x 10 Hz (6.9 M samples)
   written directly in the run format (``samples-nvml.parquet`` via :func:`wattprof.run.write_parquet`,
   the finalisation path), with a step every ``--step-s`` seconds (default 0.5 s: 172,800 steps,
   labels train / eval) in a steps JSONL file; then ``Run.open`` + ``build_report`` is timed
   (reading the samples, and the report, on their own too).

   Each report runs in a fresh Python process, so its peak RSS (``ru_maxrss``) is its own, not the
   generator's; the machine's load average is recorded with it. ``--week-hours`` (default 168)
   adds the same for a week (48 M samples, 1.2 M steps): ``report_week`` in the JSON.
   ``--batch-rows 0`` times the old path (the whole samples table in memory) for comparison.

Targets: <= 16 bytes per stored metric value (issue "Trust"); a 24 h report <= 5 s and <= 1 GB
peak RSS, a 7-day report <= 30 s and <= 2 GB (issue 19, scale).

    python benchmarks/storage.py [--minutes 10] [--hours 24] [--week-hours 168] [--step-s 0.5]
                                 [--batch-rows N] [--skip-report] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

DEVICES = 8
RATE_HZ = 10.0
NVML_METRICS = ("energy_j", "power_w", "power_avg_w", "util_pct", "mem_util_pct", "mem_used_bytes",
                "sm_clock_mhz", "temp_c", "throttle_reasons", "sm_active_pct", "sm_occupancy_pct",
                "tensor_active_pct", "dram_active_pct", "pcie_tx_mbps", "pcie_rx_mbps", "nvlink_tx_mbps",
                "nvlink_rx_mbps")
#: rows per Parquet row group (pyarrow's default for ``write_table``, what finalisation writes)
ROW_GROUP = 1 << 20


def trace_columns() -> dict[str, np.ndarray]:
    """The H100 capture at 10 Hz in schema units (one loop of the trace)."""
    from wattprof import data
    from wattprof.formats.nvml_trace import read_nvml_trace

    df = read_nvml_trace(data.path("nvml_samples_10ms.csv")).gpus[0].iloc[::10].reset_index(drop=True)
    return {
        "energy_j": df["energy_mj"].to_numpy(float) / 1000.0,
        "power_w": df["power_instant_mw"].to_numpy(float) / 1000.0,
        "power_avg_w": df["power_average_mw"].to_numpy(float) / 1000.0,
        "util_pct": df["util_gpu"].to_numpy(float),
        "mem_util_pct": df["util_mem"].to_numpy(float),
        "mem_used_bytes": df["mem_used_b"].to_numpy(float),
        "sm_clock_mhz": df["clock_sm_mhz"].to_numpy(float),
        "temp_c": df["temp_c"].to_numpy(float),
        "throttle_reasons": df["clocks_event_reasons"].to_numpy(float),
    }


def synth(n: int, device: int, t0: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` samples of one GPU: the trace looped from a per-GPU offset, counter kept increasing."""
    tr = trace_columns() if not hasattr(synth, "_tr") else synth._tr  # type: ignore[attr-defined]
    synth._tr = tr  # type: ignore[attr-defined]
    m = len(tr["energy_j"])
    idx = (np.arange(n) + device * 37) % m
    loops = (np.arange(n) + device * 37) // m
    out = {k: v[idx] for k, v in tr.items()}
    span = tr["energy_j"][-1] - tr["energy_j"][0] + tr["power_w"][-1] * 0.1
    out["energy_j"] = out["energy_j"] + loops * span + 1e6 * device
    out["t"] = t0 + np.arange(n) / RATE_HZ + device * 3e-4 + rng.normal(0, 2e-4, n)
    return out


def bytes_per_value(minutes: float) -> dict:
    from wattprof.run import Run, RunWriter

    rng = np.random.default_rng(1)
    n = int(minutes * 60 * RATE_HZ)
    per_dev = [synth(n, d, 1.8e9, rng) for d in range(DEVICES)]
    with tempfile.TemporaryDirectory() as tmp:
        w = RunWriter.create(Path(tmp) / "run")
        stream = w.sample_stream("nvml", list(NVML_METRICS))
        per_batch = int(RATE_HZ)  # one batch per second, as the recorder flushes
        t0 = time.perf_counter()
        for b in range(0, n, per_batch):
            rows = []
            for i in range(b, min(b + per_batch, n)):
                for d, cols in enumerate(per_dev):
                    row = {"t": cols["t"][i], "device": f"gpu:{d}"}
                    row.update({k: cols[k][i] for k in NVML_METRICS if k in cols})
                    rows.append(row)
            stream.append(rows)
        append_s = time.perf_counter() - t0
        arrow = stream.path.stat().st_size
        w.finalize(status="finished")
        parquet = sum(p.stat().st_size for p in (Path(tmp) / "run").glob("samples-*.parquet"))
        samples = Run.open(Path(tmp) / "run").samples
    rows_n = len(samples)
    metric_cols = [c for c in samples.columns if c not in ("t", "device")]
    values = int(samples[metric_cols].notna().sum().sum())
    cells = rows_n * len(metric_cols)
    return {"samples": rows_n, "metric_values": values, "metric_cells": cells, "arrow_bytes": arrow,
            "parquet_bytes": parquet, "append_s_per_batch": append_s / (n / per_batch),
            "arrow_per_sample": arrow / rows_n, "arrow_per_value": arrow / values, "arrow_per_cell": arrow / cells,
            "parquet_per_sample": parquet / rows_n, "parquet_per_value": parquet / values,
            "parquet_per_cell": parquet / cells}


def write_big_run(path: Path, hours: float, step_s: float) -> dict:
    """A finished run of ``hours`` x 8 GPUs x 10 Hz in the run format; returns its sizes.

    ``samples-nvml.parquet`` is what finalisation (:func:`wattprof.run.write_parquet`) writes:
    sorted by device then time, zstd, row groups of up to 1 Mi rows; it is written a row group at a
    time (a week is 48 M rows: the table is never built whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wattprof.run import PARQUET_COMPRESSION, JsonlAppender, RunWriter

    rng = np.random.default_rng(2)
    n = int(hours * 3600 * RATE_HZ)
    t0 = 1.8e9
    w = RunWriter.create(path, name="synthetic-24h", interval_s=1 / RATE_HZ, clock_time=t0)
    w.add_devices({f"gpu:{d}": {"kind": "gpu", "vendor": "nvidia", "name": "NVIDIA H100 80GB HBM3 (synthetic)",
                                "power_limit_w": 700.0, "power_source": "synthetic from the H100 capture"}
                   for d in range(DEVICES)})
    key = w.add_source("nvml", {"kind": "collector", "collector": "nvml", "devices": [f"gpu:{d}"
                                                                                      for d in range(DEVICES)]})
    writer = None
    for d in range(DEVICES):
        cols = synth(n, d, t0, rng)
        for a in range(0, n, ROW_GROUP):
            b = min(a + ROW_GROUP, n)
            arrays = {"t": pa.array(cols["t"][a:b]),
                      "device": pa.array(np.full(b - a, f"gpu:{d}", dtype=object), pa.string())}
            for m in NVML_METRICS:
                arrays[m] = pa.array(cols[m][a:b]) if m in cols else pa.nulls(b - a, pa.float64())
            table = pa.table(arrays)
            if writer is None:
                writer = pq.ParquetWriter(path / f"samples-{key}.parquet", table.schema,
                                          compression=PARQUET_COMPRESSION)
            writer.write_table(table, row_group_size=ROW_GROUP)
        del cols
    assert writer is not None
    writer.close()
    steps = JsonlAppender(path / "steps-0-1.jsonl")
    k = int(hours * 3600 / step_s)
    starts = t0 + np.arange(k) * step_s
    for i in range(k):
        label = "eval" if (i // 200) % 10 == 9 else "train"
        steps.append({"step": i, "t_start": float(starts[i]), "t_end": float(starts[i] + step_s * 0.9),
                      "tokens": 4096 if label == "train" else 1024, "label": label})
    steps.close()
    w.finalize(status="finished", exit_code=0, ended_at=t0 + hours * 3600)
    return {"samples": n * DEVICES, "steps": k,
            "bytes": sum(p.stat().st_size for p in path.iterdir())}


def time_report(path: Path, batch_rows: int | None) -> dict:
    """``Run.open`` + ``build_report`` of the run at ``path``, in this process (run it in a fresh
    one: the peak RSS is the process's)."""
    import resource

    from wattprof.reports.build import build_report
    from wattprof.run import Run

    t0 = time.perf_counter()
    run = Run.open(path)
    steps = run.steps
    t1 = time.perf_counter()
    rep = build_report(run, batch_rows=batch_rows)
    t2 = time.perf_counter()
    return {"read_steps_s": t1 - t0, "build_s": t2 - t1, "total_s": t2 - t0, "steps_read": len(steps),
            "energy_j": rep.energy_j, "labels": sorted(rep.by_label),
            "path": "one device at a time" if batch_rows else "whole samples table", "batch_rows": batch_rows,
            "cpu_s": (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_SELF)),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def report_in_child(path: Path, batch_rows: int | None, profile: bool) -> dict:
    """:func:`time_report` in a fresh Python process: its peak RSS is the report's alone (not the
    generator's), measured by the kernel (``ru_maxrss``), whatever else runs on the machine."""
    cmd = [sys.executable, __file__, "--child", str(path), "--batch-rows", str(batch_rows or 0)]
    if profile:
        cmd.append("--profile")
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"report failed:\n{p.stderr[-4000:]}")
    if profile:
        print(p.stderr[-12000:])
    return {**json.loads(p.stdout.strip().splitlines()[-1]), "load_avg_1min": (load + os.getloadavg()[0]) / 2}


def case(hours: float, step_s: float, batch_rows: int | None, profile: bool) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        t0 = time.perf_counter()
        big = write_big_run(Path(tmp) / "run", hours, step_s)
        gen_s = time.perf_counter() - t0
        rep = report_in_child(Path(tmp) / "run", batch_rows, profile)
    rep.update(big, generate_s=gen_s, hours=hours)
    return rep


def child(path: str, batch_rows: int, profile: bool) -> None:
    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
    rep = time_report(Path(path), batch_rows or None)
    if profile:
        pr.disable()
        pstats.Stats(pr, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    print(json.dumps(rep))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the bytes-per-value run")
    ap.add_argument("--hours", type=float, default=24.0, help="length of the run to report")
    ap.add_argument("--week-hours", type=float, default=168.0,
                    help="length of the second (long) run to report; 0 skips it")
    ap.add_argument("--step-s", type=float, default=0.5, help="one step every this many seconds")
    ap.add_argument("--batch-rows", type=int, default=None,
                    help="rows per Parquet read (default wattprof's); 0: the whole samples table at once")
    ap.add_argument("--skip-report", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the report (top 30 by cumulative time)")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/storage.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from wattprof.run.scan import BATCH_ROWS

    batch_rows = BATCH_ROWS if args.batch_rows is None else args.batch_rows
    if args.child:
        child(args.child, batch_rows, args.profile)
        return
    b = bytes_per_value(args.minutes)
    print(table(["file", "bytes", "per sample", "per stored value", "per cell (incl. null)"], [
        ["live Arrow stream (zstd)", b["arrow_bytes"], f"{b['arrow_per_sample']:.1f}", f"{b['arrow_per_value']:.2f}",
         f"{b['arrow_per_cell']:.2f}"],
        ["finalised Parquet (zstd)", b["parquet_bytes"], f"{b['parquet_per_sample']:.1f}",
         f"{b['parquet_per_value']:.2f}", f"{b['parquet_per_cell']:.2f}"],
    ]))
    print(f"({b['samples']} samples, {b['metric_values']} stored values; target <= 16 B per stored value; "
          f"{b['append_s_per_batch'] * 1e3:.2f} ms to encode and append one 1 s batch of {DEVICES} GPUs)")
    out: dict = {"args": vars(args), "bytes": b, "report": None}
    if not args.skip_report:
        cases = [("report", args.hours, 5.0, 1024.0)]
        if args.week_hours and args.week_hours != args.hours:
            cases.append(("report_week", args.week_hours, 30.0, 2048.0))
        rows = []
        for key, hours, target_s, target_mb in cases:
            rep = case(hours, args.step_s, batch_rows or None, args.profile)
            rep.update(target_s=target_s, target_rss_mb=target_mb)
            out[key] = rep
            rows.append([f"{hours:g} h x {DEVICES} GPU x {RATE_HZ:g} Hz", rep["samples"], rep["steps"],
                         f"{rep['bytes'] / 1e6:.1f}", f"{rep['read_steps_s']:.2f}", f"{rep['build_s']:.2f}",
                         f"{rep['total_s']:.2f}", f"{rep['max_rss_mb']:.0f}", f"{rep['load_avg_1min']:.1f}",
                         f"<= {target_s:g} s, <= {target_mb:g} MB"])
        print(table(["run", "samples", "steps", "on disk MB", "read steps s", "build_report s", "total s",
                     "max RSS MB", "load avg", "target"], rows))
        print(f"path: {out['report']['path']} (batch_rows={batch_rows or None}); each report in a fresh process "
              f"(RSS is its own); load avg: the machine's 1-minute load during it ({os.cpu_count()} CPUs)")
    path = write_json("storage", out, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

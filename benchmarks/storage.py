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

Targets (issue "Trust"): <= 16 bytes per stored metric value; report <= 30 s.

    python benchmarks/storage.py [--minutes 10] [--hours 24] [--step-s 0.5] [--skip-report]
"""

from __future__ import annotations

import argparse
import json
import os
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
    """A finished run of ``hours`` x 8 GPUs x 10 Hz in the run format; returns its sizes."""
    import pyarrow as pa

    from wattprof.run import JsonlAppender, RunWriter, write_parquet

    rng = np.random.default_rng(2)
    n = int(hours * 3600 * RATE_HZ)
    t0 = 1.8e9
    w = RunWriter.create(path, name="synthetic-24h", interval_s=1 / RATE_HZ, clock_time=t0)
    w.add_devices({f"gpu:{d}": {"kind": "gpu", "vendor": "nvidia", "name": "NVIDIA H100 80GB HBM3 (synthetic)",
                                "power_limit_w": 700.0, "power_source": "synthetic from the H100 capture"}
                   for d in range(DEVICES)})
    key = w.add_source("nvml", {"kind": "collector", "collector": "nvml", "devices": [f"gpu:{d}"
                                                                                      for d in range(DEVICES)]})
    tables = []
    for d in range(DEVICES):
        cols = synth(n, d, t0, rng)
        arrays = {"t": pa.array(cols["t"]), "device": pa.array(np.full(n, f"gpu:{d}", dtype=object), pa.string())}
        for m in NVML_METRICS:
            arrays[m] = pa.array(cols[m]) if m in cols else pa.nulls(n, pa.float64())
        tables.append(pa.table(arrays))
    write_parquet(pa.concat_tables(tables), path / f"samples-{key}.parquet")
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


def time_report(path: Path) -> dict:
    import resource

    from wattprof.reports.build import build_report
    from wattprof.run import Run

    t0 = time.perf_counter()
    run = Run.open(path)
    samples = run.samples
    t1 = time.perf_counter()
    _ = run.steps
    t2 = time.perf_counter()
    rep = build_report(run)
    t3 = time.perf_counter()
    return {"read_samples_s": t1 - t0, "read_steps_s": t2 - t1, "build_s": t3 - t2, "total_s": t3 - t0,
            "rows": len(samples), "energy_j": rep.energy_j, "labels": sorted(rep.by_label),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the bytes-per-value run")
    ap.add_argument("--hours", type=float, default=24.0, help="length of the run to report")
    ap.add_argument("--step-s", type=float, default=0.5, help="one step every this many seconds")
    ap.add_argument("--skip-report", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile build_report (top 25 by cumulative time)")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/storage.json)")
    args = ap.parse_args()
    b = bytes_per_value(args.minutes)
    print(table(["file", "bytes", "per sample", "per stored value", "per cell (incl. null)"], [
        ["live Arrow stream (zstd)", b["arrow_bytes"], f"{b['arrow_per_sample']:.1f}", f"{b['arrow_per_value']:.2f}",
         f"{b['arrow_per_cell']:.2f}"],
        ["finalised Parquet (zstd)", b["parquet_bytes"], f"{b['parquet_per_sample']:.1f}",
         f"{b['parquet_per_value']:.2f}", f"{b['parquet_per_cell']:.2f}"],
    ]))
    print(f"({b['samples']} samples, {b['metric_values']} stored values; target <= 16 B per stored value; "
          f"{b['append_s_per_batch'] * 1e3:.2f} ms to encode and append one 1 s batch of {DEVICES} GPUs)")
    rep = None
    if not args.skip_report:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            t0 = time.perf_counter()
            big = write_big_run(Path(tmp) / "run", args.hours, args.step_s)
            gen_s = time.perf_counter() - t0
            if args.profile:
                import cProfile
                import pstats

                pr = cProfile.Profile()
                pr.enable()
            rep = time_report(Path(tmp) / "run")
            if args.profile:
                pr.disable()
                pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
        rep.update(big, generate_s=gen_s)
        print(table(["run", "samples", "steps", "on disk MB", "read samples s", "read steps s", "build_report s",
                     "total s", "max RSS MB"], [[
                         f"{args.hours:g} h x {DEVICES} GPU x {RATE_HZ:g} Hz", rep["samples"], rep["steps"],
                         f"{rep['bytes'] / 1e6:.1f}", f"{rep['read_samples_s']:.2f}", f"{rep['read_steps_s']:.2f}",
                         f"{rep['build_s']:.2f}", f"{rep['total_s']:.2f}", f"{rep['max_rss_mb']:.0f}"]]))
        print("target: report <= 30 s")
    path = write_json("storage", {"args": vars(args), "bytes": b, "report": rep}, args.json)
    print(f"wrote {path}")
    json.dumps(rep)


if __name__ == "__main__":
    main()

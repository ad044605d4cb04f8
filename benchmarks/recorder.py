"""The recorder's own cost and timing: 8 replayed GPUs (``nvml-replay:devices=8``) at 10 Hz and 100 Hz.

Each trial runs in a fresh child process (as ``wattprof record`` and ``profile()``'s sampler do):
it creates a run, starts the :class:`~wattprof.recording.recorder.Recorder`, sleeps ``--seconds`` and stops.
Measured in the child, in steady state: from just after ``start()`` (which opens the collectors:
the replay backend parses its trace) to just before ``stop()``; start, stop and finalisation are
timed on their own:

- CPU share of one core: process CPU time (all threads) / wall time;
- sampling jitter: the GPUs' sample stamps (taken by the collector just before its first NVML
  call) against the ideal grid ``t0 + k * interval``, p50 and p99 of ``|interval error|``
  between consecutive samples, as a share of the interval;
- drift: the last sample's stamp against ``t0 + (n - 1 + missed) * interval``;
- bytes on disk per sample and per stored metric value (non-null metric cells) of the live Arrow
  stream (before finalisation) and of the finalised Parquet file.

By default (``--read-timeout auto``) each collector samples in a thread of its own (what keeps a
hung collector from stopping the others); ``--compare-inline`` also runs ``--read-timeout 0``: one
loop reading the collectors in turn, to measure what the threads cost.

Targets (issue "Trust"): <= 2 % of a core at 10 Hz, p99 jitter <= 20 % of the interval, no drift,
<= 16 bytes per stored metric value.

    python benchmarks/recorder.py [--seconds 60] [--rates 10,100] [--devices 8] [--compare-inline]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402


def child(rate: float, seconds: float, devices: int, read_timeout: str) -> dict:
    import numpy as np

    from wattprof.collectors.base import resolve
    from wattprof.recording.recorder import Recorder
    from wattprof.run import Run, RunWriter

    interval = 1.0 / rate
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        writer = RunWriter.create(run_dir, name="bench", interval_s=interval)
        collectors = resolve([f"nvml-replay:devices={devices}"])
        rt: float | str = read_timeout if read_timeout == "auto" else float(read_timeout)
        rec = Recorder(writer, collectors, interval=interval, read_timeout=rt)
        c0 = time.process_time()
        rec.start()  # opens the collectors (the replay backend reads its trace): timed on its own
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        rec.stop()
        stop_cpu_s = time.process_time() - cpu1
        start_cpu_s = cpu0 - c0
        stream = next(run_dir.glob("samples-*.arrows"))
        arrow_bytes = stream.stat().st_size
        f0 = time.perf_counter()
        writer.finalize(status="finished", exit_code=0)
        finalize_s = time.perf_counter() - f0
        parquet_bytes = sum(p.stat().st_size for p in run_dir.glob("samples-*.parquet"))
        samples = Run.open(run_dir).samples
    metrics = [c for c in samples.columns if c not in ("t", "device")]
    values = int(samples[metrics].notna().sum().sum())
    t = np.sort(samples.loc[samples["device"] == "gpu:0", "t"].to_numpy())
    d = np.diff(t)
    err = np.abs(d - interval)
    missed = rec.stats.missed_ticks
    drift = (t[-1] - t[0]) - (len(t) - 1 + missed) * interval
    return {
        "rate_hz": rate, "interval_s": interval, "devices": devices, "read_timeout": read_timeout,
        "seconds": wall1 - wall0, "cpu_s": cpu1 - cpu0, "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "ticks": rec.stats.ticks, "missed_ticks": missed, "timeouts": rec.stats.timeouts,
        "samples": len(samples), "metric_values": values,
        "jitter_p50_s": float(np.percentile(err, 50)), "jitter_p99_s": float(np.percentile(err, 99)),
        "jitter_max_s": float(err.max()),
        "jitter_p99_share": float(np.percentile(err, 99)) / interval, "drift_s": float(drift),
        "arrow_bytes": arrow_bytes, "parquet_bytes": parquet_bytes,
        "arrow_bytes_per_sample": arrow_bytes / len(samples), "arrow_bytes_per_value": arrow_bytes / values,
        "parquet_bytes_per_sample": parquet_bytes / len(samples),
        "parquet_bytes_per_value": parquet_bytes / values, "finalize_s": finalize_s,
        "start_cpu_s": start_cpu_s, "stop_cpu_s": stop_cpu_s,
    }


def trial(rate: float, seconds: float, devices: int, read_timeout: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "--rates", str(rate), "--seconds", str(seconds),
                          "--devices", str(devices), "--read-timeout", read_timeout],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rates", default="10,100", help="sampling rates in Hz, comma-separated")
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--read-timeout", default="auto", help="auto (a thread per collector, stuck after 1 s) or "
                    "seconds; 0 = one loop reading the collectors in turn")
    ap.add_argument("--compare-inline", action="store_true", help="also run each rate with one loop (read-timeout 0)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/recorder.json)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if args.child:
        print(json.dumps(child(rates[0], args.seconds, args.devices, args.read_timeout)))
        return
    results = []
    for rate in rates:
        modes = [args.read_timeout] + (["0"] if args.compare_inline and args.read_timeout != "0" else [])
        for mode in modes:
            r = trial(rate, args.seconds, args.devices, mode)
            results.append(r)
            print(f"  {rate:g} Hz, {'one loop (read_timeout=0)' if mode == '0' else 'a thread per collector'}: "
                  f"{100 * r['cpu_share']:.2f} % of a core", file=sys.stderr)
    rows = [[f"{r['rate_hz']:g} Hz", "one loop" if r["read_timeout"] == "0" else "threads",
             f"{r['seconds']:.0f}", f"{100 * r['cpu_share']:.2f} %", f"{r['jitter_p50_s'] * 1e3:.2f}",
             f"{r['jitter_p99_s'] * 1e3:.2f} ({100 * r['jitter_p99_share']:.0f} %)", f"{r['drift_s'] * 1e3:+.2f}",
             r["missed_ticks"], f"{r['arrow_bytes_per_value']:.2f}", f"{r['parquet_bytes_per_value']:.2f}",
             f"{r['arrow_bytes_per_sample']:.1f}/{r['parquet_bytes_per_sample']:.1f}"]
            for r in results]
    print(table(["rate", "sampling", "s", "CPU (1 core)", "jitter p50 ms", "jitter p99 ms (of interval)",
                 "drift ms", "missed", "B/value arrow", "B/value parquet", "B/sample arrow/parquet"], rows))
    print(f"targets: CPU <= 2 % at 10 Hz; p99 jitter <= 20 % of the interval; no drift; <= 16 B per value "
          f"({args.devices} replayed GPUs)")
    path = write_json("recorder", {"args": vars(args), "results": results}, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

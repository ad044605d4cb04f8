"""Alignment at scale: 10 M samples (8 devices) x 1 M steps on this machine.

Synthetic but shaped like a real run: 8 GPUs sampled at 10 Hz with an energy counter
(1.25 M samples each, ~35 h), 1 M steps of ~0.1 s with tokens and 4 labels in blocks. Times the
same functions the report uses (energy curves per device, per-step energy, per-label spans,
idle) and measures peak memory of the alignment (tracemalloc; numpy reports its buffers to it)
and of the whole process (max RSS). Target (issue 3): <= 5 s and <= 2 GB.

    python benchmarks/align_scale.py [--samples 10000000] [--devices 8] [--steps 1000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from wattprof.analysis import align, energy  # noqa: E402


def synthetic(n_samples: int, n_dev: int, n_steps: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    per = n_samples // n_dev
    t = 1.8e9 + np.arange(per) * 0.1
    frames = []
    for d in range(n_dev):
        p = 300 + 250 * np.sin(t / 50.0 + d) + rng.normal(0, 20, per)
        e = np.cumsum(np.clip(p, 60, 700) * 0.1)
        frames.append(pd.DataFrame({"t": t + rng.normal(0, 0.002, per), "energy_j": e}))
    samples = pd.concat(frames, ignore_index=True)
    samples["device"] = pd.Categorical(np.repeat([f"gpu:{d}" for d in range(n_dev)], per))
    span = t[-1] - t[0]
    dur = span / n_steps
    s0 = t[0] + np.arange(n_steps) * dur
    labels = np.array(["train", "eval", "train_long", "decode"])[(np.arange(n_steps) // 10000) % 4]
    steps = pd.DataFrame({"step": np.arange(n_steps), "t_start": s0, "t_end": s0 + dur * 0.9,
                          "tokens": np.full(n_steps, 4096.0), "label": labels})
    return samples, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--json")
    args = ap.parse_args()
    t = time.perf_counter()
    samples, steps = synthetic(args.samples, args.devices, args.steps)
    gen_s = time.perf_counter() - t
    tracemalloc.start()
    t0 = time.perf_counter()
    cs = energy.curves(samples)
    t1 = time.perf_counter()
    result = align.align(list(cs.values()), steps)
    t2 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    total = t2 - t0
    rows = [["curves (8 devices)", f"{t1 - t0:.2f}"], ["align (per step, per label, idle)", f"{t2 - t1:.2f}"],
            ["total", f"{total:.2f}"]]
    print(f"{len(samples):,} samples x {len(steps):,} steps (input generated in {gen_s:.1f} s)")
    print(table(["phase", "seconds"], rows))
    print(f"alignment peak memory (tracemalloc): {peak / 1e9:.2f} GB; process max RSS: {rss_gb:.2f} GB "
          f"(includes the input frames); targets <= 5 s, <= 2 GB")
    assert len(result.step_energy_j) == len(steps) and len(result.labels) == 4
    path = write_json("align_scale", {"samples": len(samples), "devices": args.devices, "steps": len(steps),
                                      "curves_s": t1 - t0, "align_s": t2 - t1, "total_s": total,
                                      "peak_alloc_gb": peak / 1e9, "max_rss_gb": rss_gb,
                                      "target_s": 5.0, "target_gb": 2.0,
                                      "met": total <= 5.0 and peak / 1e9 <= 2.0}, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

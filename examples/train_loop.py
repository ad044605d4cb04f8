"""A training-like loop profiled with wattprof: per-step, per-token energy.

Runs anywhere: on a machine with an NVIDIA GPU it measures it through NVML; without one it
replays the real H100 trace shipped with wattprof (`nvml-replay`), so the numbers are the trace's.

    python examples/train_loop.py
    wattprof report wattprof-runs/<the run it prints>
"""

from __future__ import annotations

import time

import wattprof
from wattprof.collectors.base import create

gpu = create("nvml").available()[0]
collectors = ["nvml", "host"] if gpu else ["nvml-replay", "host"]

with wattprof.profile("example-train", collectors=collectors, tags={"model": "toy"}) as prof:
    for _ in range(30):
        with prof.step(tokens=16 * 1024, label="train"):
            time.sleep(0.05)  # your forward/backward/optimizer step here (end it with a sync, e.g. loss.item())
    for _ in range(10):
        with prof.step(tokens=64, label="eval"):
            time.sleep(0.02)

print(f"run saved in {prof.run_dir}")
print(f"report: wattprof report {prof.run_dir}")

"""A small fixed benchmark for a nightly energy job: N training-like steps with token counts.

Run it under wattprof so the job is recorded with the nightly's tags:

    wattprof record -n train-bench -t benchmark=train-bench -t commit=$(git rev-parse --short HEAD) \
        --out runs/train-bench/$(date +%Y%m%d) -- python examples/nightly/bench.py

On a GPU machine it trains a tiny model with PyTorch (if installed) and the nvml collector
measures the GPU; without one, add `-c nvml-replay` to replay the shipped H100 trace.
"""

from __future__ import annotations

import argparse
import time

import wattprof


def step_cpu(work: int) -> None:
    acc = 0.0
    for i in range(work):
        acc += (i % 7) * 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tokens-per-step", type=int, default=8192)
    ap.add_argument("--work", type=int, default=20000, help="host work per step (stand-in for a real step)")
    args = ap.parse_args()
    # Inside `wattprof record`, this joins the recorder's run; alone, it records a run of its own.
    with wattprof.profile("train-bench", tags={"benchmark": "train-bench"}) as prof:
        for _ in range(args.steps):
            with prof.step(tokens=args.tokens_per_step, label="train"):
                step_cpu(args.work)
                time.sleep(0.01)
    print(f"run: {prof.run_dir}")


if __name__ == "__main__":
    main()

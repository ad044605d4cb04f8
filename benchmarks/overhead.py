"""Overhead of wattprof.profile() on a CPU-bound Python training-like loop.

Three kinds of trials, interleaved in one process in a shuffled order each round:
  A  and A2  no profile (A2 is a second baseline: the A/A difference is the noise floor)
  B          inside ``wattprof.profile()`` sampling at 10 Hz with the host and NVML replay
             collectors, every step marked with ``prof.step(tokens=..., label=...)``
Every trial first runs ~1 s of untimed warm-up steps (for B: inside the profile, so the timed
steps see the sampler in steady state, as a training loop does after its first second); then it
times ``--steps`` steps. Start and stop latency of the profile are reported on their own.
A CPU-bound pure-Python loop is the worst case for a sampler (it never releases the GIL).
Target (issue 2): <= 1 % slowdown of the median step time.

    python benchmarks/overhead.py [--rounds 15] [--steps 300] [--interval 0.1] [--sampler process|thread]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

import wattprof  # noqa: E402


def work(n: int = 100000) -> float:
    """~3-4 ms of pure-Python arithmetic: a stand-in for a step's host-side work."""
    acc = 0.0
    for i in range(n):
        acc += (i % 7) * 0.5
    return acc


def steps(n: int, prof: wattprof.Profile | None) -> float:
    t0 = time.perf_counter()
    if prof is None:
        for _ in range(n):
            work()
    else:
        for _ in range(n):
            with prof.step(tokens=512, label="train"):
                work()
    return (time.perf_counter() - t0) / n


def warm_up(prof: wattprof.Profile | None, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        steps(10, prof)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--sampler", choices=["process", "thread"], default="process")
    ap.add_argument("--json")
    args = ap.parse_args()
    res: dict[str, list[float]] = {"A": [], "A2": [], "B": []}
    start_s, stop_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            kinds = list(res)
            random.shuffle(kinds)
            for k in kinds:
                if k != "B":
                    warm_up(None)
                    res[k].append(steps(args.steps, None))
                    continue
                t0 = time.perf_counter()
                prof = wattprof.profile(f"overhead-{r}", collectors=["host", "nvml-replay"], interval=args.interval,
                                        out=Path(tmp) / f"r{r}", sampler=args.sampler).start()
                start_s.append(time.perf_counter() - t0)
                warm_up(prof)
                res[k].append(steps(args.steps, prof))
                t0 = time.perf_counter()
                prof.stop()
                stop_s.append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in res.items()}
    slowdown = 100 * (med["B"] / med["A"] - 1)
    noise = 100 * (med["A2"] / med["A"] - 1)
    rows = [[k, f"{med[k] * 1e3:.3f}", f"{min(v) * 1e3:.3f}", f"{max(v) * 1e3:.3f}"] for k, v in res.items()]
    print(table(["trial", "median step ms", "min", "max"], rows))
    print(f"slowdown of the median step with profile() at {1 / args.interval:.0f} Hz ({args.sampler} sampler): "
          f"{slowdown:+.2f} %   A/A noise floor: {noise:+.2f} %   (target <= 1 %; {args.rounds} rounds x "
          f"{args.steps} steps)")
    print(f"profile start: median {statistics.median(start_s) * 1e3:.0f} ms; stop (flush, compact, finalise): "
          f"median {statistics.median(stop_s) * 1e3:.0f} ms")
    path = write_json("overhead", {
        "rounds": args.rounds, "steps": args.steps, "interval_s": args.interval, "sampler": args.sampler,
        "collectors": ["host", "nvml-replay"], "step_s": res, "median_slowdown_pct": slowdown,
        "aa_noise_pct": noise, "start_s": start_s, "stop_s": stop_s, "target_pct": 1.0,
        "met": slowdown <= 1.0}, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The NVML collector's own cost per reading: CPU time of ``NvmlCollector.read()`` over N GPUs.

Two backends, both fed by the real H100 capture (``tests/fixtures/nvidia-h100``):

- ``replay``: :class:`~wattprof.collectors.nvml.ReplayNvml` (what ``nvml-replay``, the demo and
  most tests use);
- ``strict``: the strict stand-in of the real ``pynvml`` module (``tests/nvml_strict.py``: real
  ctypes types, each call's arguments bound to the real signature). Its own checks dominate its
  cost: compare its two rows with each other, not with ``replay`` or real NVML.

``strict + MIG, timeouts``: GPU 0 in MIG mode (utilisation Not Supported, noted once, not asked
again) and a transient Timeout on GPU 1 every 10th reading (that GPU's reading dropped alone).
On a GPU the per-reading cost is dominated by the driver (``nvmlDeviceGetTotalEnergyConsumption``
about 2.8 ms per GPU on an H100, REFERENCE.md); this measures only wattprof's side.

    python benchmarks/nvml_read.py [--gpus 1,8,32] [--reads 50] [--repeats 15]
    PYTHONPATH=/path/to/older/wattprof python benchmarks/nvml_read.py --backends replay   # before/after
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import table, write_json  # noqa: E402


def cpu_ms_per_read(backend: str, gpus: int, reads: int, repeats: int, faults: bool) -> float:
    import pynvml

    from wattprof.clock import ManualClock
    from wattprof.collectors.nvml import NvmlCollector, ReplayNvml

    fixtures = Path(os.environ.get("WATTPROF_FIXTURES", HERE.parent / "tests" / "fixtures"))
    clock = ManualClock(0.0)
    replay = ReplayNvml(fixtures / "nvidia-h100" / "nvml_samples_10ms.csv", clock=clock, devices=gpus)
    if backend == "strict":
        from nvml_strict import StrictNvml

        lib = StrictNvml(replay)
    else:
        lib = replay
    if faults:
        if backend != "strict":
            raise SystemExit("faults need the strict backend")
        lib.mig(0)
        if gpus > 1:
            lib.fault("nvmlDeviceGetTotalEnergyConsumption", pynvml.NVML_ERROR_TIMEOUT, device=1,
                      when=lambda n: n % 10 == 9)
    c = NvmlCollector(clock=clock, nvml=lib, gpm=False)
    c.open()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(reads):
            clock.advance(0.1)
            c.read()
        best = min(best, (time.process_time() - t0) / reads)
    c.close()
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", default="1,8,32")
    ap.add_argument("--reads", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--backends", default="replay,strict,strict+faults",
                    help="which rows (replay alone also runs against an older wattprof on PYTHONPATH)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    rows, results = [], []
    for gpus in (int(g) for g in args.gpus.split(",")):
        for name in args.backends.split(","):
            backend, faults = name.split("+")[0], name.endswith("+faults")
            ms = cpu_ms_per_read(backend, gpus, args.reads, args.repeats, faults)
            label = backend + (" + MIG, timeouts" if faults else "")
            rows.append([gpus, label, f"{ms:.3f}", f"{ms / gpus * 1e3:.0f}"])
            results.append({"gpus": gpus, "backend": backend, "faults": faults, "cpu_ms_per_read": ms})
    print(table(["gpus", "backend", "CPU ms/read", "CPU us/GPU"], rows))
    print(f"(min over {args.repeats} x {args.reads} reads, process CPU time)")
    print("wrote", write_json("nvml_read", {"reads": args.reads, "repeats": args.repeats, "results": results},
                              args.out))


if __name__ == "__main__":
    main()

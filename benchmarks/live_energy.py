"""Cost of live energy: one :class:`wattprof.analysis.integrate.EnergyAccumulator` observation of
a recorder's latest readings (what the status line does every second and the Prometheus endpoint
every 0.5 s and at each scrape), and its agreement with the report's curves on the real H100 trace.

1. **Cost.** Microseconds per observed snapshot of ``--devices`` GPUs with a counter plus a host
   with estimated power, median over ``--repeat`` passes of ``--snapshots`` snapshots.
2. **Agreement.** The trace (10 ms NVML samples, 58 s) fed reading by reading, by counter and by
   instant power, against :func:`wattprof.analysis.energy.counter_curve` / ``power_curve``.

    python benchmarks/live_energy.py [--devices 8] [--snapshots 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TRACE = REPO / "tests" / "fixtures" / "nvidia-h100" / "nvml_samples_10ms.csv"


def cost_us(devices: int, snapshots: int, repeat: int) -> float:
    from wattprof.analysis.integrate import EnergyAccumulator

    snaps = [{**{f"gpu:{d}": {"t": float(i), "energy_j": 1000.0 + 300.0 * i, "power_w": 300.0}
                 for d in range(devices)}, "host": {"t": float(i), "power_est_w": 50.0}} for i in range(snapshots)]
    runs = []
    for _ in range(repeat):
        acc = EnergyAccumulator()
        t0 = time.perf_counter()
        for s in snaps:
            acc.observe(s)
        runs.append((time.perf_counter() - t0) / snapshots * 1e6)
    return statistics.median(runs)


def agreement() -> list[list[object]]:
    from wattprof.analysis import energy
    from wattprof.analysis.integrate import EnergyAccumulator

    raw = pd.read_csv(TRACE)
    t = raw["t"].to_numpy()
    rows = []
    for name, col, scale in (("counter", "energy_mj", 1e-3), ("instant power", "power_instant_mw", 1e-3)):
        v = raw[col].to_numpy() * scale
        key = "energy_j" if name == "counter" else "power_w"
        acc = EnergyAccumulator()
        for ti, vi in zip(t, v, strict=True):
            acc.observe({"gpu:0": {"t": float(ti), key: float(vi)}})
        live = acc.state()["gpu:0"].energy_j
        curve = energy.counter_curve(t, v)[1] if name == "counter" else energy.power_curve(t, v)[1]
        ref = float(curve[-1] - curve[0])
        rows.append([name, f"{live:.3f}", f"{ref:.3f}", f"{100 * (live / ref - 1):+.2e}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--snapshots", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", help="JSON path (default benchmarks/results/live_energy.json)")
    a = ap.parse_args()
    us = cost_us(a.devices, a.snapshots, a.repeat)
    print(table(["devices", "snapshots", "median us per snapshot"], [[a.devices + 1, a.snapshots, f"{us:.1f}"]]))
    rows = agreement()
    print()
    print(table(["H100 trace, fed live", "live J", "report curve J", "difference %"], rows))
    path = write_json("live_energy", {"devices": a.devices + 1, "snapshots": a.snapshots, "us_per_snapshot": us,
                                      "agreement": [dict(zip(["source", "live_j", "curve_j", "diff_pct"], r,
                                                             strict=True)) for r in rows]}, a.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

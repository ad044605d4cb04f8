"""CloudWatch read cost of one run's fetch: GetMetricData calls and estimated data points (what the
throttling quota and the bill count), reading each series at the period its readings come at
(wattprof, with its 60 s SampleCount probe) versus at 1 s for any window younger than 3 hours
(what the collector did before). Pure planning with the collector's own planner: no AWS needed.

    python benchmarks/cloudwatch_quota.py [--gpus 8] [--metrics 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from wattprof.collectors.cloudwatch.query import choose_period, plan_calls  # noqa: E402


def cost(n_series: int, window_s: float, period: int) -> tuple[int, int]:
    calls = plan_calls(n_series, 0.0, window_s + 2 * max(period, 60), period)
    return len(calls), sum(c.points for c in calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--metrics", type=int, default=8, help="metrics per GPU (the agent section's measurements)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/cloudwatch_quota.json)")
    a = ap.parse_args()
    n = a.gpus * a.metrics
    rows, results = [], []
    for interval in (10, 60):
        for minutes in (10, 60, 150):
            window = minutes * 60.0
            period = choose_period(0.0, window, interval_s=interval, high_resolution=interval < 60)
            probe_calls, probe_points = cost(n, window, 60)
            new_calls, new_points = cost(n, window, period)
            old_calls, old_points = cost(n, window, 1)
            new_calls, new_points = new_calls + probe_calls, new_points + probe_points
            ratio = old_points / new_points
            rows.append([f"{interval} s", f"{minutes} min", n, period, new_calls, new_points, old_calls, old_points,
                         f"{ratio:.1f}x"])
            results.append({"interval_s": interval, "run_min": minutes, "series": n, "period_s": period,
                            "calls": new_calls, "points": new_points, "calls_at_1s": old_calls,
                            "points_at_1s": old_points, "points_saved_x": round(ratio, 2)})
    print(table(["agent interval", "run", "series", "period", "calls", "points", "calls@1s", "points@1s", "saved"],
                rows))
    print(f"wrote {write_json('cloudwatch_quota', {'gpus': a.gpus, 'metrics': a.metrics, 'results': results}, a.out)}")


if __name__ == "__main__":
    main()

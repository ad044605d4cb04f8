"""Cost of the Neuron collector's per-report and per-start work on large instance shapes.

1. **Parsing.** ``json.loads`` + :func:`wattprof.formats.neuron_monitor.parse_report` per
   neuron-monitor report, for the fixtures of ``tests/fixtures/aws-neuron`` (trn1.2xlarge capture
   shape, and the generated trn1.32xlarge, inf2.xlarge, trn2.48xlarge): median and p95 over
   ``--repeat`` passes of each file's steady-state reports. neuron-monitor prints one report per
   period (1 s), so this is the collector's CPU share per device-second of recording.
2. **Finding the power node.** :func:`wattprof.collectors.neuron_sysfs.scan` over a synthetic
   tree of ``--devices`` (default 16) ``neuron<N>`` directories with 8 ``neuron_core<K>`` each and
   the sysfs user guide's counters under them (~70 files per core): with the node at the pre-2.31
   path (found without searching), moved elsewhere (found by the search) and absent (the whole
   search, the worst case). Done once when a recording starts.

    python benchmarks/neuron.py [--repeat 50] [--devices 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "aws-neuron"
FILES = {
    "trn1.2xlarge": "neuron_monitor_trn1_2xlarge_replay.jsonl",
    "trn1.32xlarge": "neuron_monitor_trn1_32xlarge_replay.jsonl",
    "inf2.xlarge": "neuron_monitor_inf2_xlarge_replay.jsonl",
    "trn2.48xlarge": "neuron_monitor_trn2_48xlarge_replay.jsonl",
}
STATUS = ("exec_bad_input", "hw_error", "infer_failed_to_queue", "resource_nc_error", "failure", "success",
          "generic_error", "timeout", "oob_error", "invalid_error")
MEMORY = ("collectives", "constants", "dma_rings", "driver_memory", "model_code", "model_shared_scratchpad",
          "nonshared_scratchpad", "notifications", "runtime_memory", "tensors", "uncategorized")


def bench_parse(repeat: int) -> list[dict]:
    from wattprof.formats.neuron_monitor import parse_report

    out = []
    for shape, name in FILES.items():
        lines = [ln for ln in (FIXTURES / name).read_text().splitlines() if ln.strip()][2:]  # steady state
        times = []
        for _ in range(repeat):
            for ln in lines:
                t0 = time.perf_counter()
                parse_report(json.loads(ln))
                times.append(time.perf_counter() - t0)
        times.sort()
        out.append({"shape": shape, "line_bytes": max(len(ln) for ln in lines), "reports": len(times),
                    "median_us": statistics.median(times) * 1e6, "p95_us": times[int(0.95 * len(times))] * 1e6})
    return out


def make_tree(root: Path, devices: int, where: str | None) -> None:
    for n in range(devices):
        d = root / f"neuron{n}"
        for k in range(8):
            core = d / f"neuron_core{k}" / "stats"
            for s in STATUS:
                (core / "status" / s).mkdir(parents=True)
                (core / "status" / s / "total").write_text("0\n")
                (core / "status" / s / "present").write_text("0\n")
            for m in MEMORY:
                (core / "memory_usage" / "device_mem" / m).mkdir(parents=True)
                (core / "memory_usage" / "device_mem" / m / "total").write_text("0\n")
        (d / "power").mkdir(parents=True)
        (d / "power" / "runtime_status").write_text("unsupported\n")
        (d / "info" / "architecture").mkdir(parents=True)
        (d / "info" / "serial_number").write_text(f"{n:016x}\n")
        if where is not None:
            (d / where).mkdir(parents=True, exist_ok=True)
            (d / where / "utilization").write_text("POWER_STATUS_VALID,1789180860,0.86,25.00,18.86\n")


def bench_scan(devices: int, repeat: int) -> list[dict]:
    from wattprof.collectors.neuron_sysfs import scan

    out = []
    for layout, where in (("pre-2.31 path", "stats/power"), ("moved (searched)", "stats/hardware/power"),
                          ("absent (full search)", None)):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_tree(root, devices, where)
            files = sum(1 for p in root.rglob("*") if p.is_file())
            times = []
            for _ in range(max(repeat // 10, 3)):
                t0 = time.perf_counter()
                found = scan(root)
                times.append(time.perf_counter() - t0)
            assert len(found) == devices and all(bool(d.power) == (where is not None) for d in found.values())
        out.append({"layout": layout, "devices": devices, "files": files, "median_ms": statistics.median(times) * 1e3})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--devices", type=int, default=16)
    ap.add_argument("--out", help="JSON path (default benchmarks/results/neuron.json)")
    args = ap.parse_args()
    parse = bench_parse(args.repeat)
    print(table(["shape", "line bytes", "reports", "median us", "p95 us"],
                [[r["shape"], r["line_bytes"], r["reports"], f"{r['median_us']:.0f}", f"{r['p95_us']:.0f}"]
                 for r in parse]))
    print()
    scans = bench_scan(args.devices, args.repeat)
    print(table(["sysfs layout", "devices", "files", "scan median ms"],
                [[r["layout"], r["devices"], r["files"], f"{r['median_ms']:.1f}"] for r in scans]))
    path = write_json("neuron", {"parse": parse, "scan": scans, "repeat": args.repeat}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

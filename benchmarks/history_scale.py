"""Reading a history of 1000 runs' summaries (what `wattprof nightly` does first).

Builds one real run (the shipped H100 trace imported with its steps), copies it 1000 times as 10
benchmarks x 100 nights (meta.json, summary.json and the samples, as a real history holds), then
times `load_history` over the directory. Also times recomputing summaries that are missing.
Target (issue 6): <= 5 s for 1000 runs.

    python benchmarks/history_scale.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from wattprof.data import path as data_path  # noqa: E402
from wattprof.history import SUMMARY, load_history  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "history"
        seed = Path(tmp) / "seed"
        subprocess.run([sys.executable, "-m", "wattprof", "import", str(seed), "--samples",
                        str(data_path("nvml_samples_10ms.csv")), "--steps", str(data_path("steps.jsonl"))],
                       check=True, capture_output=True)
        load_history([seed])  # writes its summary.json
        for i in range(args.runs):
            d = root / f"bench{i % 10}" / f"night-{i // 10:03d}"
            shutil.copytree(seed, d)
            meta = json.loads((d / "meta.json").read_text())
            meta["tags"] = {"benchmark": f"bench{i % 10}"}
            meta["started_at"] = 1.79e9 + (i // 10) * 86400
            (d / "meta.json").write_text(json.dumps(meta))
            s = json.loads((seed / SUMMARY).read_text())
            s.update(benchmark=f"bench{i % 10}", tags=meta["tags"], started_at=meta["started_at"])
            (d / SUMMARY).write_text(json.dumps(s))
        t0 = time.perf_counter()
        hist = load_history([root])
        read_s = time.perf_counter() - t0
        assert len(hist) == args.runs
        missing = list(root.glob("bench0/night-00*"))[:10]
        for d in missing:
            (d / SUMMARY).unlink()
        t0 = time.perf_counter()
        load_history(missing)
        recompute_s = (time.perf_counter() - t0) / len(missing)
    print(table(["what", "seconds"], [[f"read {args.runs} summaries", f"{read_s:.2f}"],
                                      ["recompute one missing summary", f"{recompute_s:.2f}"]]))
    print(f"target: <= 5 s for 1000 runs -> {'met' if read_s <= 5 else 'MISSED'}")
    path = write_json("history_scale", {"runs": args.runs, "read_s": read_s, "recompute_one_s": recompute_s,
                                        "target_s": 5.0, "met": read_s <= 5.0}, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

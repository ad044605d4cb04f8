"""Fuzz every reader of outside input at length: the targets of tests/fuzz/fuzzkit.py (mutated real
captures: steps JSONL, nvidia-smi CSV and its line parser, neuron-monitor JSON, vLLM bench results,
gpm-csv, nvml-trace-csv, the NVML-trace import path with its sidecars, ``meta.json`` (read, and
reported), CLI option values, damaged run directories, and reporting damaged runs).

Property: each input is parsed, or rejected with the reader's own error (InputError; RunError for
runs); anything else is an *unexpected* exception. Known bugs whose fix is pending outside the
tests (``fuzzkit.PENDING``) are counted apart as *pending*. Target: 0 unexpected at 10,000
examples per reader.

    python benchmarks/fuzz.py [--examples 10000] [--report-examples 1000] [--only NAME ...] [--seed N]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "fuzz"))
from _common import table, write_json  # noqa: E402

#: targets that build and render a report per example (0.03-0.3 s each): --report-examples
REPORTING = ("run-dir-report", "meta-report")


def fuzz(target, examples: int, seed: int | None) -> dict:
    from fuzzkit import run_target
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    work = Path(tempfile.mkdtemp(prefix=f"wattprof-fuzz-{target.name}-"))
    counts: collections.Counter = collections.Counter()
    samples: dict[tuple[str, str], str] = {}

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def run(data):
        o = run_target(target, data, work)
        counts[o.kind] += 1
        if o.kind in ("unexpected", "pending"):
            where = next((ln.strip() for ln in reversed(o.trace.splitlines()) if ln.strip().startswith("File")), "")
            key = (o.kind, f"{type(o.error).__name__} at {where}")
            counts[key] += 1
            samples.setdefault(key, f"{type(o.error).__name__}: {str(o.error)[:200]}\ninput: {repr(data)[:400]}")

    if seed is not None:
        run = hseed(seed)(run)
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    kinds = {k: counts[k] for k in ("parsed", "rejected", "pending", "unexpected")}
    problems = [{"kind": k[0], "where": k[1], "count": n, "example": samples[k]}
                for k, n in counts.items() if isinstance(k, tuple)]
    return {"target": target.name, "examples": sum(kinds.values()), **kinds, "seconds": elapsed,
            "problems": sorted(problems, key=lambda p: -p["count"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=10000, help="examples per reader")
    ap.add_argument("--report-examples", type=int, default=1000,
                    help="examples for run-dir-report and meta-report (each builds and renders a report)")
    ap.add_argument("--only", nargs="*", help="target names (default: all)")
    ap.add_argument("--seed", type=int, help="hypothesis seed (default: random)")
    ap.add_argument("--json", help="where to write the results (default benchmarks/results/fuzz.json)")
    args = ap.parse_args()
    from fuzzkit import targets

    all_targets = targets()
    names = args.only or list(all_targets)
    results = []
    for name in names:
        n = args.report_examples if name in REPORTING else args.examples
        r = fuzz(all_targets[name], n, args.seed)
        results.append(r)
        print(f"  {name}: {r['examples']} examples in {r['seconds']:.0f} s, {r['unexpected']} unexpected, "
              f"{r['pending']} pending", file=sys.stderr, flush=True)
        for p in r["problems"]:
            print(f"    {p['kind']} x{p['count']}: {p['where']}\n      {p['example'][:300]}", file=sys.stderr)
    print(table(["reader", "examples", "parsed", "rejected (own error)", "pending fix", "unexpected", "s"],
                [[r["target"], r["examples"], r["parsed"], r["rejected"], r["pending"], r["unexpected"],
                  f"{r['seconds']:.0f}"] for r in results]))
    total = sum(r["unexpected"] for r in results)
    print(f"unexpected exceptions: {total} (target 0)")
    path = write_json("fuzz", {"args": vars(args), "results": results}, args.json)
    print(f"wrote {path}")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()

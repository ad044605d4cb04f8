"""Agent tasks at scale: span mapping, concurrency attribution and the OTLP receiver.

Synthetic but shaped like a busy serving day: tasks of 4 model calls and 3 tool calls, 32 tasks
in flight at a time, one GPU with an energy counter at 10 Hz. Times the functions the report uses
(:func:`wattprof.formats.genai.map_spans`, :func:`wattprof.analysis.attribution.agent_energy`),
their peak memory (tracemalloc), the conservation error (sum of task energies against the energy
over the union of task spans), and the receiver's throughput for JSON and protobuf bodies of 100
spans posted over HTTP on 127.0.0.1.

    python benchmarks/agents.py [--tasks 1000 10000 50000] [--posts 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from wattprof.analysis import attribution, energy  # noqa: E402
from wattprof.analysis.align import energy_over, merge_intervals  # noqa: E402
from wattprof.formats.genai import map_spans  # noqa: E402
from wattprof.formats.otlp_json import Span  # noqa: E402


def synthetic_spans(n_tasks: int, seed: int = 0) -> list[Span]:
    rng = np.random.default_rng(seed)
    out = []
    t = 1.8e9
    for k in range(n_tasks):
        t0 = t + (k // 32) * 12.0 + rng.uniform(0, 4)
        tid, agent = f"{k:032x}", f"{k:08x}00000000"
        c = t0
        kids = []
        for i in range(4):
            d = rng.uniform(0.3, 2.0)
            kids.append(Span(tid, f"{k:08x}{i + 1:08x}", agent, "chat", c, c + d,
                             {"gen_ai.operation.name": "chat", "gen_ai.request.model": f"m{i % 2}",
                              "gen_ai.usage.input_tokens": int(rng.integers(100, 2000)),
                              "gen_ai.usage.output_tokens": int(rng.integers(10, 500))}))
            c += d
            if i < 3:
                d = rng.uniform(0.05, 0.5)
                kids.append(Span(tid, f"{k:08x}{i + 11:08x}", agent, "execute_tool", c, c + d,
                                 {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}))
                c += d
        out.append(Span(tid, agent, None, "invoke_agent", t0, c + 0.1,
                        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": f"task{k}"}))
        out += kids
    return out


def counter_curve(t0: float, t1: float) -> energy.EnergyCurve:
    t = np.arange(t0 - 1, t1 + 1, 0.1)
    p = 300 + 200 * np.sin(t / 7.0)
    return energy.EnergyCurve("gpu:0", "counter", t, np.concatenate([[0.0], np.cumsum(p[1:] * 0.1)]))


def _run(spans: list[Span]) -> tuple[float, float, attribution.AgentEnergy, energy.EnergyCurve]:
    a = time.perf_counter()
    m = map_spans(spans)
    b = time.perf_counter()
    steps = pd.DataFrame(m.steps)
    c = counter_curve(float(steps["t_start"].min()), float(steps["t_end"].max()))
    t0 = time.perf_counter()
    res = attribution.agent_energy(steps, [c])
    t1 = time.perf_counter()
    assert res is not None
    return b - a, t1 - t0, res, c


def bench_attribution(n_tasks: int) -> dict:
    spans = synthetic_spans(n_tasks)
    map_s, attr_s, res, c = _run(spans)  # timed without tracemalloc (it slows Python code several times)
    tracemalloc.start()
    _run(spans)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    u0, u1 = merge_intervals(np.array([x.t_start for x in res.tasks]), np.array([x.t_end for x in res.tasks]))
    union = float(energy_over([c], u0, u1).sum())
    err = abs(sum(x.energy_j for x in res.tasks) / union - 1)
    return {"tasks": n_tasks, "spans": len(spans), "map_s": map_s, "attribute_s": attr_s,
            "peak_mb": peak / 2**20, "conservation_rel_err": err}


def bench_receiver(posts: int) -> list[dict]:
    from wattprof.otlp.receiver import OtlpReceiver

    rows = []
    spans = synthetic_spans(15)[:100]
    body_json = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": s.trace_id, "spanId": s.span_id, "parentSpanId": s.parent_id or "", "name": s.name,
         "startTimeUnixNano": str(int(s.t_start * 1e9)), "endTimeUnixNano": str(int(s.t_end * 1e9)),
         "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                        for k, v in s.attributes.items()]} for s in spans]}]}]}).encode()
    bodies = {"json": (body_json, "application/json")}
    try:
        from google.protobuf import json_format
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        d = json.loads(body_json)
        import base64

        for s in d["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for k in ("traceId", "spanId", "parentSpanId"):
                s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
        bodies["protobuf"] = (json_format.ParseDict(d, ExportTraceServiceRequest()).SerializeToString(),
                              "application/x-protobuf")
    except ImportError:
        pass
    for kind, (body, ctype) in bodies.items():
        with tempfile.TemporaryDirectory() as tmp:
            r = OtlpReceiver(tmp, port=0, max_spans=10**9)
            r.start()
            a = time.perf_counter()
            for _ in range(posts):
                req = urllib.request.Request(r.endpoint, data=body, headers={"Content-Type": ctype})
                urllib.request.urlopen(req, timeout=10).read()
            took = time.perf_counter() - a
            b = time.perf_counter()
            s = r.stop()
            rows.append({"body": kind, "posts": posts, "spans": s["spans"], "spans_per_s": s["spans"] / took,
                         "body_kb": len(body) / 1024, "map_at_stop_s": time.perf_counter() - b})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--posts", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = [bench_attribution(n) for n in args.tasks]
    print(table(["tasks", "spans", "map s", "attribute s", "peak MB", "sum vs union"],
                [[r["tasks"], r["spans"], f"{r['map_s']:.2f}", f"{r['attribute_s']:.2f}", f"{r['peak_mb']:.0f}",
                  f"{r['conservation_rel_err']:.1e}"] for r in rows]))
    rec = bench_receiver(args.posts)
    print()
    print(table(["body", "posts", "spans", "spans/s", "body KB", "map at stop s"],
                [[r["body"], r["posts"], r["spans"], f"{r['spans_per_s']:.0f}", f"{r['body_kb']:.1f}",
                  f"{r['map_at_stop_s']:.2f}"] for r in rec]))
    print(f"\nwrote {write_json('agents', {'attribution': rows, 'receiver': rec}, args.out)}")


if __name__ == "__main__":
    main()

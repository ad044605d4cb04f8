"""Build OTLP JSON export requests (the Collector file exporter's lines) for tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

_ids = itertools.count(1)


def new_id(n: int = 16) -> str:
    return f"{next(_ids):0{n}x}"


def attr(key: str, value: Any) -> dict:
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def span(trace: str, name: str, t0: float, t1: float, *, parent: str | None = None, span_id: str | None = None,
         **attrs: Any) -> dict:
    s = {"traceId": trace, "spanId": span_id or new_id(), "name": name,
         "startTimeUnixNano": str(int(round(t0 * 1e9))), "endTimeUnixNano": str(int(round(t1 * 1e9))),
         "attributes": [attr(k.replace("__", "."), v) for k, v in attrs.items()]}
    if parent:
        s["parentSpanId"] = parent
    return s


def request(spans: list[dict], service: str = "agent") -> dict:
    return {"resourceSpans": [{"resource": {"attributes": [attr("service.name", service)]},
                               "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]}


def write_lines(path: Path, requests: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    return path


def serve_tasks(requests: list[dict], per_task: int) -> list[dict]:
    """The serving capture's requests as GenAI spans: consecutive requests grouped ``per_task`` into
    one ``invoke_agent`` task each (one trace per task), one ``chat`` span per request."""
    out = []
    for k in range(0, len(requests), per_task):
        group = requests[k:k + per_task]
        trace = new_id(32)
        agent = new_id()
        t0, t1 = min(r["t_start"] for r in group), max(r["t_end"] for r in group)
        spans = [span(trace, "invoke_agent serve", t0, t1, span_id=agent, gen_ai__operation__name="invoke_agent",
                      gen_ai__agent__name=f"task{k // per_task}")]
        for r in group:
            spans.append(span(trace, "chat gpt2-24l", r["t_start"], r["t_end"], parent=agent,
                              gen_ai__operation__name="chat", gen_ai__request__model="gpt2-24l",
                              gen_ai__usage__input_tokens=int(r["prompt_tokens"]),
                              gen_ai__usage__output_tokens=int(r["output_tokens"]),
                              gen_ai__latency__time_to_first_token=float(r["t_first_token"] - r["t_start"])))
        out.append(request(spans))
    return out

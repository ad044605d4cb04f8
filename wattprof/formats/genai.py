"""OpenTelemetry GenAI spans -> wattprof steps (model calls, tool calls) grouped into tasks.

Follows the OpenTelemetry semantic conventions for generative AI, **v1.37.0** (``gen_ai.*``,
status "development"); :data:`SEMCONV_VERSION` is recorded with every import.

- A span whose ``gen_ai.operation.name`` is one of :data:`MODEL_OPERATIONS` is a **model call**:
  one step labelled by ``gen_ai.request.model`` (else ``gen_ai.response.model``), with
  ``prompt_tokens`` = ``gen_ai.usage.input_tokens`` and ``output_tokens`` =
  ``gen_ai.usage.output_tokens`` (the older ``gen_ai.usage.prompt_tokens`` /
  ``completion_tokens`` are accepted). vLLM's own server-side request spans (``llm_request``, no
  operation name, model and usage attributes) are model calls too; their
  ``gen_ai.latency.time_to_first_token`` gives ``t_first_token``.
- ``execute_tool`` spans are **tool calls** (label ``tool``, ``tool_name`` from
  ``gen_ai.tool.name``): host time, no GPU work of their own.
- The **task** of a call is its outermost ``invoke_agent`` ancestor (name from
  ``gen_ai.agent.name``), else its trace (name of the root span). Every step carries
  ``task_id``, ``task_name``, ``task_start`` and ``task_end`` (the task span's bounds).
- A model call nested in another model call (a client span around the server's span, when trace
  context propagates) is counted once: the outer one is kept, the inner one flagged.

Spans that break the rules (end before start, negative or non-numeric token counts, an unknown
operation name) are skipped or taken without the bad value, and each kind of problem is one
flag line with a count. Unknown attributes are ignored.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .otlp_json import Span

SEMCONV_VERSION = "1.37.0"
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
TOOL_OPERATION = "execute_tool"
AGENT_OPERATION = "invoke_agent"
#: operation names of the conventions that are neither calls nor tasks (structure only)
OTHER_OPERATIONS = frozenset({"create_agent", "invoke_workflow"})
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model")
TTFT_KEYS = ("gen_ai.latency.time_to_first_token", "gen_ai.response.time_to_first_chunk")
TOOL_LABEL = "tool"
UNKNOWN_MODEL = "unknown-model"


@dataclass
class Mapped:
    """Steps (dicts in the steps JSONL vocabulary) and one flag line per kind of problem."""

    steps: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)
    tasks: int = 0


def _op(s: Span) -> str | None:
    v = s.attributes.get("gen_ai.operation.name")
    return str(v) if v is not None else None


def _is_model_call(s: Span) -> bool:
    op = _op(s)
    if op is not None:
        return op in MODEL_OPERATIONS
    has_model = any(s.attributes.get(k) for k in MODEL_KEYS)
    return has_model and any(k in s.attributes for k in INPUT_KEYS + OUTPUT_KEYS)


def _count(attrs: dict[str, Any], keys: tuple[str, ...], problems: Counter) -> float | None:
    for k in keys:
        if k in attrs:
            v = attrs[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                problems[f"'{k}' is not a non-negative number (token count taken as unknown)"] += 1
                return None
            return float(v)
    return None


def map_spans(spans: Iterable[Span]) -> Mapped:
    problems: Counter[str] = Counter()
    tree = _Tree(spans, problems)
    steps: list[dict[str, Any]] = []
    tasks: set[str] = set()
    no_tokens = 0
    for s in sorted(tree.by_id.values(), key=lambda x: (x.t_start, x.t_end)):
        op = _op(s)
        model = _is_model_call(s)
        tool = op == TOOL_OPERATION
        if op is not None and not (model or tool or op == AGENT_OPERATION or op in OTHER_OPERATIONS):
            problems[f"unknown gen_ai.operation.name '{op[:40]}': span not counted"] += 1
            continue
        if not (model or tool):
            continue
        anc = list(tree.ancestors(s))
        if model and any(_is_model_call(a) for a in anc):
            problems["model call nested in another model call: counted once, as the outer call"] += 1
            continue
        task_id, task_name, t0, t1 = tree.task_of(s, anc)
        tasks.add(task_id)
        row: dict[str, Any] = {"t_start": s.t_start, "t_end": s.t_end, "task_id": task_id, "task_name": task_name,
                               "task_start": t0, "task_end": t1, "trace_id": s.trace_id, "span_id": s.span_id,
                               "operation": op or "llm_request"}
        row.update(_call_fields(s, problems) if model else
                   {"call": "tool", "label": TOOL_LABEL,
                    "tool_name": str(s.attributes.get("gen_ai.tool.name") or s.name)})
        if model and row["prompt_tokens"] is None and row["output_tokens"] is None:
            no_tokens += 1
        steps.append({k: v for k, v in row.items() if v is not None})
    for i, step in enumerate(steps):
        step["step"] = i
    flags = [f"{n} span(s): {what}" for what, n in sorted(problems.items())]
    if no_tokens:
        flags.append(f"{no_tokens} model call(s) without token usage attributes: counted as calls, tokens unknown")
    return Mapped(steps, flags, len(tasks))


class _Tree:
    """The spans by (trace, span id), with their parents, each trace's root and time bounds."""

    def __init__(self, spans: Iterable[Span], problems: Counter[str]) -> None:
        self.by_id: dict[tuple[str, str], Span] = {}
        for s in spans:
            if not (s.t_end >= s.t_start):
                problems["span ends before it starts: skipped"] += 1
                continue
            key = (s.trace_id, s.span_id)
            if key in self.by_id:
                problems["duplicate span id (exported twice?): counted once"] += 1
                continue
            self.by_id[key] = s
        self.bounds: dict[str, list[float]] = {}  # per trace: first start, last end (task fallback)
        self.roots: dict[str, Span] = {}
        for s in self.by_id.values():
            b = self.bounds.setdefault(s.trace_id, [s.t_start, s.t_end])
            b[0], b[1] = min(b[0], s.t_start), max(b[1], s.t_end)
            if self.parent(s) is None:
                r = self.roots.get(s.trace_id)
                if r is None or s.t_start < r.t_start:
                    self.roots[s.trace_id] = s

    def parent(self, s: Span) -> Span | None:
        return self.by_id.get((s.trace_id, s.parent_id)) if s.parent_id else None

    def ancestors(self, s: Span) -> Iterable[Span]:
        seen = {s.span_id}
        p = self.parent(s)
        while p is not None and p.span_id not in seen:  # a parent cycle in bad input ends here
            seen.add(p.span_id)
            yield p
            p = self.parent(p)

    def task_of(self, s: Span, ancestors: list[Span]) -> tuple[str, str, float, float]:
        """(id, name, start, end) of the span's task: its outermost agent span, else its trace."""
        agents = [a for a in ancestors if _op(a) == AGENT_OPERATION]
        if agents:
            t = agents[-1]  # outermost agent
            return (f"{t.trace_id}/{t.span_id}", str(t.attributes.get("gen_ai.agent.name") or t.name or "agent"),
                    t.t_start, t.t_end)
        root = self.roots.get(s.trace_id)
        t0, t1 = self.bounds[s.trace_id]
        if root is not None:
            t0, t1 = min(root.t_start, t0), max(root.t_end, t1)
        return s.trace_id, root.name if root is not None and root.name else "trace", t0, t1


def _call_fields(s: Span, problems: Counter[str]) -> dict[str, Any]:
    """A model call's model, token counts and time to first token."""
    m = next((str(s.attributes[k]) for k in MODEL_KEYS if s.attributes.get(k)), UNKNOWN_MODEL)
    pin = _count(s.attributes, INPUT_KEYS, problems)
    pout = _count(s.attributes, OUTPUT_KEYS, problems)
    out: dict[str, Any] = {"call": "llm", "label": m, "model": m, "tokens": pout, "prompt_tokens": pin,
                           "output_tokens": pout}
    ttft = next((s.attributes[k] for k in TTFT_KEYS if k in s.attributes), None)
    if isinstance(ttft, (int, float)) and not isinstance(ttft, bool) and 0 <= ttft <= s.t_end - s.t_start:
        out["t_first_token"] = s.t_start + float(ttft)
    return out

"""A small agent instrumented with OpenTelemetry's GenAI semantic conventions (docs/agents.md).

Each task is an ``invoke_agent`` span holding ``chat`` spans (model calls, with token usage) and
``execute_tool`` spans, exported over OTLP/HTTP (protobuf) to wherever
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` points. Under ``wattprof record --otlp`` that is wattprof::

    pip install 'wattprof[otel]'
    wattprof record --otlp -c nvml-replay -- python examples/agents/agent.py
    wattprof report wattprof-runs/<the run>

The "model" here sleeps instead of calling a server: point ``call_model`` at your vLLM / SGLang /
TGI / NIM client and keep the span attributes. The first task runs alone; the others overlap
(two at a time), as concurrent users of one model server do. ``--summary FILE`` writes the tokens
and task names the agent sent (the test compares them with wattprof's report).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

MODEL = "llama-3.1-8b-instruct"
tracer = trace.get_tracer("wattprof-example-agent")
_sent_lock = threading.Lock()
sent = {"input_tokens": 0, "output_tokens": 0, "llm_calls": 0, "tool_calls": 0, "tasks": []}


def call_model(prompt_tokens: int, output_tokens: int, seconds: float) -> None:
    with tracer.start_as_current_span(f"chat {MODEL}") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "vllm")
        span.set_attribute("gen_ai.request.model", MODEL)
        time.sleep(seconds)  # the model server works here
        span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    with _sent_lock:
        sent["input_tokens"] += prompt_tokens
        sent["output_tokens"] += output_tokens
        sent["llm_calls"] += 1


def run_tool(name: str, seconds: float) -> None:
    with tracer.start_as_current_span(f"execute_tool {name}") as span:
        span.set_attribute("gen_ai.operation.name", "execute_tool")
        span.set_attribute("gen_ai.tool.name", name)
        time.sleep(seconds)  # e.g. a web search: host time, the GPU waits
    with _sent_lock:
        sent["tool_calls"] += 1


def task(name: str, steps: int, scale: float) -> None:
    with tracer.start_as_current_span(f"invoke_agent {name}") as span:
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
        span.set_attribute("gen_ai.agent.name", name)
        for i in range(steps):
            call_model(300 + 50 * i, 40 + 10 * i, 0.25 * scale)
            run_tool("search", 0.1 * scale)
        call_model(500, 120, 0.3 * scale)  # the answer
    with _sent_lock:
        sent["tasks"].append(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=5, help="tasks after the first (run two at a time)")
    ap.add_argument("--summary", help="write what was sent (tokens, calls, task names) to this JSON file")
    args = ap.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "example-agent"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint from the environment
    trace.set_tracer_provider(provider)
    task("solo", 3, 1.0)  # alone on the GPU
    time.sleep(0.3)
    for k in range(0, args.tasks, 2):
        threads = [threading.Thread(target=task, args=(f"user{k + j}", 2 + j, 0.8)) for j in range(2)
                   if k + j < args.tasks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    provider.shutdown()  # flushes the spans before the process exits
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(sent, f)
    print(f"agent: {len(sent['tasks'])} tasks, {sent['llm_calls']} model calls, {sent['tool_calls']} tool calls")


if __name__ == "__main__":
    main()

"""Agent spans live: `record --otlp` and `profile(otlp=...)` receiving a real OpenTelemetry SDK agent
while the H100 trace replays, and the receiver's handling of bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import wattprof, wattprof_in_process
from otlpkit import new_id, request, span

from wattprof.analysis.align import merge_intervals
from wattprof.formats import otlp_json
from wattprof.formats.genai import map_spans
from wattprof.otlp import protobuf
from wattprof.otlp.receiver import OtlpReceiver
from wattprof.run import Run

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "examples" / "agents" / "agent.py"


def counter_between(run: Run, t0: float, t1: float) -> float:
    s = run.samples.dropna(subset=["energy_j"]).sort_values("t")
    return float(np.interp(t1, s["t"], s["energy_j"]) - np.interp(t0, s["t"], s["energy_j"]))


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    pytest.importorskip("opentelemetry.sdk.trace")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    d = tmp_path_factory.mktemp("agent")
    out = d / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    p = wattprof("record", "-q", "-o", str(out), "--otlp=0", "-c", "nvml-replay", "--", sys.executable, str(AGENT),
                 "--summary", str(d / "sent.json"), env=env, timeout=180)
    return out, json.loads((d / "sent.json").read_text()), p


def test_record_otlp_real_sdk_agent_tasks_tokens_and_energy(agent_run) -> None:
    out, sent, p = agent_run
    assert p.returncode == 0, p.stderr
    assert "receiving OTLP traces on http://127.0.0.1:" in p.stderr
    doc = json.loads(wattprof_in_process("report", str(out), "-f", "json", check=True).stdout)
    tasks = {t["name"]: t for t in doc["tasks"]}
    assert sorted(tasks) == sorted(sent["tasks"])
    # token totals exact, calls counted once
    assert sum(t["input_tokens"] for t in tasks.values()) == sent["input_tokens"]
    assert sum(t["output_tokens"] for t in tasks.values()) == sent["output_tokens"]
    assert sum(t["llm_calls"] for t in tasks.values()) == sent["llm_calls"]
    assert sum(t["tool_calls"] for t in tasks.values()) == sent["tool_calls"]
    # tool calls are steps (host time), not inference requests
    assert doc["by_label"]["tool"]["steps"] == sent["tool_calls"] and doc["by_label"]["tool"]["j_per_request"] is None
    m = doc["by_model"]["llama-3.1-8b-instruct"]
    assert (m["input_tokens"], m["output_tokens"]) == (sent["input_tokens"], sent["output_tokens"])
    run = Run.open(out)
    # per-task energies sum to the counter's energy over the union of the task spans
    u0, u1 = merge_intervals(np.array([t["t_start"] for t in tasks.values()]),
                             np.array([t["t_end"] for t in tasks.values()]))
    union = sum(counter_between(run, a, b) for a, b in zip(u0, u1, strict=True))
    assert union > 0
    assert sum(t["energy_j"] for t in tasks.values()) == pytest.approx(union, rel=0.001)
    # the first task ran alone: it gets the counter's energy over its span
    solo = tasks["solo"]
    assert solo["energy_j"] == pytest.approx(counter_between(run, solo["t_start"], solo["t_end"]), rel=0.01)
    assert solo["tool_energy_j"] > 0 and solo["llm_energy_j"] > solo["tool_energy_j"]
    # concurrent tasks: their calls overlap and share, nothing counted twice
    assert doc["agents"]["semconv"] == "gen_ai 1.37.0"
    assert doc["agents"]["energy_j"] == pytest.approx(sum(t["energy_j"] for t in tasks.values()), rel=1e-9)


def test_child_keeps_its_own_endpoint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://collector.example:4318/v1/traces"
    p = wattprof("record", "-q", "-o", str(tmp_path / "r"), "--otlp=0", "-c", "nvml-replay", "--",
                 "sh", "-c", "echo endpoint=$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env=env)
    assert p.returncode == 0 and "endpoint=http://collector.example:4318/v1/traces" in p.stdout
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    p = wattprof("record", "-q", "-o", str(tmp_path / "r2"), "--otlp=0", "-c", "nvml-replay", "--",
                 "sh", "-c", "echo endpoint=$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env=env)
    assert p.returncode == 0 and "endpoint=http://127.0.0.1:" in p.stdout


def test_busy_port_is_a_one_line_usage_error(tmp_path: Path) -> None:
    r = OtlpReceiver(tmp_path, port=0)
    port = r.start()
    try:
        p = wattprof("record", "-q", "-o", str(tmp_path / "r"), f"--otlp={port}", "-c", "nvml-replay", "--", "true")
    finally:
        r.stop()
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1" in p.stderr and "Traceback" not in p.stderr


def test_profile_otlp_in_process(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    code = f"""
import os, time, wattprof
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
with wattprof.profile("agent", collectors=["nvml-replay"], out={str(tmp_path / 'run')!r}, otlp=0) as prof:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    tr = provider.get_tracer("t")
    with tr.start_as_current_span("invoke_agent a") as a:
        a.set_attribute("gen_ai.operation.name", "invoke_agent")
        a.set_attribute("gen_ai.agent.name", "planner")
        with tr.start_as_current_span("chat m") as c:
            c.set_attribute("gen_ai.operation.name", "chat")
            c.set_attribute("gen_ai.request.model", "m")
            time.sleep(0.3)
            c.set_attribute("gen_ai.usage.input_tokens", 11)
            c.set_attribute("gen_ai.usage.output_tokens", 7)
    provider.shutdown()
print("endpoint-after", os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WATTPROF_"))}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "endpoint-after None" in p.stdout  # the block's endpoint is undone afterwards
    doc = json.loads(wattprof_in_process("report", str(tmp_path / "run"), "-f", "json", check=True).stdout)
    (t,) = doc["tasks"]
    assert (t["name"], t["llm_calls"], t["input_tokens"], t["output_tokens"]) == ("planner", 1, 11, 7)
    assert t["energy_j"] > 0


# ---- the receiver and bad input -----------------------------------------------------------------------


def post(url: str, body: bytes, ctype: str = "application/json", **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype, **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def good_request(n_calls: int = 1, tokens: bool = True, t0: float = 1.8e9) -> dict:
    trace, agent = new_id(32), new_id()
    spans = [span(trace, "invoke_agent x", t0, t0 + 10, span_id=agent, gen_ai__operation__name="invoke_agent",
                  gen_ai__agent__name="x")]
    for i in range(n_calls):
        extra = {"gen_ai__usage__input_tokens": 5, "gen_ai__usage__output_tokens": 3} if tokens else {}
        spans.append(span(trace, "chat", t0 + i * 0.01, t0 + i * 0.01 + 1, parent=agent,
                          gen_ai__operation__name="chat", gen_ai__request__model="m", **extra))
    return request(spans)


@pytest.fixture
def receiver(tmp_path: Path):
    r = OtlpReceiver(tmp_path, port=0, max_body=64 << 10, max_spans=50)
    r.start()
    yield r
    r.stop()


def events(path: Path) -> list[dict]:
    return [json.loads(x) for f in path.glob("events-*.jsonl") for x in f.read_text().splitlines() if x]


def test_receiver_rejects_bad_bodies_with_one_line_and_keeps_going(receiver: OtlpReceiver, tmp_path: Path) -> None:
    url = receiver.endpoint
    cases = [
        (b"{not json", "application/json", 400),
        (b'{"resourceSpans": 3}', "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "application/x-protobuf", 400),
        (b"\x0a\x05\x12\x03", "application/x-protobuf", 400),  # runs past the end
        (b"hello", "text/plain", 415),
        (b"x" * (65 << 10), "application/json", 413),
        (gzip.compress(b" " * (1 << 20)), "application/json", 413),  # a small body that inflates past the limit
    ]
    for body, ctype, code in cases:
        extra = {"Content-Encoding": "gzip"} if body[:2] == b"\x1f\x8b" else {}
        status, resp = post(url, body, ctype, **extra)
        assert status == code, (body[:20], status, resp)
        msg = json.loads(resp)["message"]
        assert "\n" not in msg and msg
    assert post(url.replace("/v1/traces", "/v1/logs"), b"{}")[0] == 404
    # still receiving
    status, resp = post(url, json.dumps(good_request()).encode())
    assert status == 200 and json.loads(resp) == {}
    assert receiver.stats.rejected_bodies == len(cases) + 1
    summary = receiver.stop()
    assert summary["spans"] == 2 and summary["steps"] == 1
    ev = events(tmp_path)
    assert any(e["kind"] == "otlp_rejected" and "not JSON" in e["message"] for e in ev)


def test_bad_spans_are_flagged_not_fatal(receiver: OtlpReceiver, tmp_path: Path) -> None:
    trace = new_id(32)
    spans = [
        span(trace, "chat", 1.8e9 + 5, 1.8e9 + 4, gen_ai__operation__name="chat", gen_ai__request__model="m",
             gen_ai__usage__output_tokens=4),  # ends before it starts
        span(trace, "chat", 1.8e9, 1.8e9 + 1, gen_ai__operation__name="chat", gen_ai__request__model="m"),  # no tokens
        span(trace, "chat", 1.8e9, 1.8e9 + 1, gen_ai__operation__name="chat", gen_ai__request__model="m",
             gen_ai__usage__output_tokens="lots", my__own__attribute=3),  # not a number; an unknown attribute
        span(trace, "weird", 1.8e9, 1.8e9 + 1, gen_ai__operation__name="summon_dragon"),
        {"traceId": trace, "name": "no span id", "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
    ]
    status, resp = post(receiver.endpoint, json.dumps(request(spans)).encode())
    assert status == 200
    assert json.loads(resp)["partialSuccess"]["rejectedSpans"] == "1"
    summary = receiver.stop()
    flags = " | ".join(summary["flags"])
    assert "ends before it starts" in flags
    assert "unknown gen_ai.operation.name 'summon_dragon'" in flags
    assert "'gen_ai.usage.output_tokens' is not a non-negative number" in flags
    assert "2 model call(s) without token usage" in flags
    steps = [json.loads(x) for x in receiver.steps_path.read_text().splitlines()]
    assert len(steps) == 2 and all(s["call"] == "llm" and "output_tokens" not in s for s in steps)


def test_a_flood_of_spans_is_bounded(receiver: OtlpReceiver, tmp_path: Path) -> None:
    for _ in range(4):
        status, resp = post(receiver.endpoint, json.dumps(good_request(n_calls=20)).encode())
        assert status == 200
    assert receiver.stats.spans == 50 and receiver.stats.rejected_spans == 4 * 21 - 50
    assert json.loads(resp)["partialSuccess"]["rejectedSpans"] == "21"
    receiver.stop()
    assert len(receiver.spans_path.read_text().splitlines()) == 50
    assert sum(e["kind"] == "otlp_limit" for e in events(tmp_path)) == 1


def test_protobuf_decoder_matches_the_json_reading() -> None:
    pytest.importorskip("opentelemetry.proto")
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = good_request(n_calls=3)
    req["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"].append(
        {"key": "list", "value": {"arrayValue": {"values": [{"intValue": "-3"}, {"doubleValue": 0.5}]}}})
    for s in req["resourceSpans"][0]["scopeSpans"][0]["spans"]:  # protobuf JSON spells ids in base64
        for k in ("traceId", "spanId", "parentSpanId"):
            if k in s:
                s[k] = __import__("base64").b64encode(bytes.fromhex(s[k])).decode()
    body = json_format.ParseDict(req, ExportTraceServiceRequest()).SerializeToString()
    ours = list(protobuf.spans_from_request(body))
    ref = list(otlp_json.spans_from_request(good_request(n_calls=3)))
    assert len(ours) == len(ref) == 4
    for a, b in zip(ours, ref, strict=True):
        assert isinstance(a, otlp_json.Span)
        assert (a.name, a.t_start, a.t_end, a.service) == (b.name, b.t_start, b.t_end, b.service)
        assert a.attributes.items() >= b.attributes.items()
    assert ours[1].attributes["list"] == [-3, 0.5]
    assert ours[1].parent_id == ours[0].span_id


# ---- fuzz: any body gives spans or SpanError, nothing else ------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _valid_proto() -> bytes:
    pytest.importorskip("opentelemetry.proto")
    import base64

    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = good_request(n_calls=2)
    for s in req["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for k in ("traceId", "spanId", "parentSpanId"):
            if k in s:
                s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
    return json_format.ParseDict(req, ExportTraceServiceRequest()).SerializeToString()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_protobuf_decoder_never_raises_anything_but_span_error(data) -> None:
    body = bytearray(_valid_proto())
    for _ in range(data.draw(st.integers(1, 6))):  # flip, cut or insert bytes in a real body
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del body[i:]
        else:
            body[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        items = list(protobuf.spans_from_request(bytes(body)))
    except otlp_json.SpanError:
        return
    assert all(isinstance(x, otlp_json.Span | otlp_json.SpanError) for x in items)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                           max_leaves=20)


FIELDS = ["startTimeUnixNano", "endTimeUnixNano", "traceId", "spanId", "parentSpanId", "attributes", "name"]


@settings(max_examples=300, deadline=None)
@given(changes=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(FIELDS), json_values), max_size=5),
       attr_values=st.lists(json_values, max_size=3))
def test_json_reader_never_raises_anything_but_span_error(changes, attr_values) -> None:
    doc = good_request(n_calls=2)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for i, key, value in changes:
        spans[i][key] = value
    for v in attr_values:
        spans[1].setdefault("attributes", [])
        if isinstance(spans[1]["attributes"], list):
            spans[1]["attributes"].append({"key": "fuzz", "value": v})
    try:
        items = list(otlp_json.spans_from_request(doc))
    except otlp_json.SpanError:
        return
    assert all(isinstance(x, otlp_json.Span | otlp_json.SpanError) for x in items)
    map_spans([x for x in items if isinstance(x, otlp_json.Span)])  # the mapping takes whatever parsed

"""GenAI spans -> steps and tasks (semantic conventions), and the OTLP JSON file import's bad input."""

from __future__ import annotations

from pathlib import Path

from conftest import wattprof_in_process
from otlpkit import new_id, request, span, write_lines

from wattprof.formats import otlp_json
from wattprof.formats.genai import map_spans


def spans_of(*reqs: dict) -> list[otlp_json.Span]:
    out = []
    for r in reqs:
        out += [s for s in otlp_json.spans_from_request(r) if isinstance(s, otlp_json.Span)]
    return out


def test_vllm_server_spans_and_old_token_names_map_like_chat() -> None:
    trace = new_id(32)
    s = span(trace, "llm_request", 100.0, 104.0, gen_ai__request__model="meta-llama/Llama-3.1-8B",
             gen_ai__response__model="meta-llama/Llama-3.1-8B", gen_ai__usage__prompt_tokens=120,
             gen_ai__usage__completion_tokens=64, gen_ai__latency__time_to_first_token=0.5,
             gen_ai__request__id="cmpl-1")
    m = map_spans(spans_of(request([s], service="vllm")))
    (row,) = m.steps
    assert row["call"] == "llm" and row["label"] == "meta-llama/Llama-3.1-8B"
    assert (row["prompt_tokens"], row["output_tokens"], row["tokens"]) == (120.0, 64.0, 64.0)
    assert row["t_first_token"] == 100.5
    assert row["task_id"] == trace and row["task_name"] == "llm_request" and m.flags == []


def test_trace_is_the_task_without_an_agent_span_and_nested_calls_count_once() -> None:
    trace = new_id(32)
    root, client = new_id(), new_id()
    spans = [
        span(trace, "POST /answer", 0.0, 10.0, span_id=root),
        span(trace, "chat m", 1.0, 5.0, parent=root, span_id=client, gen_ai__operation__name="chat",
             gen_ai__request__model="m", gen_ai__usage__input_tokens=10, gen_ai__usage__output_tokens=5),
        span(trace, "llm_request", 1.1, 4.9, parent=client, gen_ai__request__model="m",
             gen_ai__usage__prompt_tokens=10, gen_ai__usage__completion_tokens=5),  # the server's own span
        span(trace, "execute_tool calc", 5.0, 6.0, parent=root, gen_ai__operation__name="execute_tool",
             gen_ai__tool__name="calc"),
        span(trace, "embeddings e", 6.0, 6.5, parent=root, gen_ai__operation__name="embeddings",
             gen_ai__request__model="e", gen_ai__usage__input_tokens=30),
    ]
    m = map_spans(spans_of(request(spans)))
    assert [r["call"] for r in m.steps] == ["llm", "tool", "llm"]
    assert {r["task_name"] for r in m.steps} == {"POST /answer"} and m.tasks == 1
    assert all((r["task_start"], r["task_end"]) == (0.0, 10.0) for r in m.steps)
    assert m.steps[1]["tool_name"] == "calc" and m.steps[1]["label"] == "tool"
    assert m.steps[2]["prompt_tokens"] == 30.0 and "output_tokens" not in m.steps[2]
    assert m.flags == ["1 span(s): model call nested in another model call: counted once, as the outer call"]


def test_outermost_agent_is_the_task_and_duplicates_count_once() -> None:
    trace = new_id(32)
    outer, inner = new_id(), new_id()
    chat = span(trace, "chat", 2.0, 3.0, parent=inner, gen_ai__operation__name="chat", gen_ai__request__model="m",
                gen_ai__usage__input_tokens=1, gen_ai__usage__output_tokens=1)
    spans = [span(trace, "invoke_agent boss", 0.0, 9.0, span_id=outer, gen_ai__operation__name="invoke_agent",
                  gen_ai__agent__name="boss"),
             span(trace, "invoke_agent helper", 1.0, 4.0, span_id=inner, parent=outer,
                  gen_ai__operation__name="invoke_agent", gen_ai__agent__name="helper"),
             chat]
    m = map_spans(spans_of(request(spans), request([chat])))  # the chat span exported twice
    (row,) = m.steps
    assert row["task_name"] == "boss" and (row["task_start"], row["task_end"]) == (0.0, 9.0)
    assert m.flags == ["1 span(s): duplicate span id (exported twice?): counted once"]


def test_import_of_a_broken_otlp_file_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    good = request([span(new_id(32), "chat", 1.8e9, 1.8e9 + 1, gen_ai__operation__name="chat",
                         gen_ai__request__model="m", gen_ai__usage__output_tokens=2)])
    f = write_lines(tmp_path / "spans.jsonl", [good])
    with f.open("a") as fh:
        fh.write('{"resourceSpans": [ oops\n')
    p = wattprof_in_process("import", str(tmp_path / "run"), "--steps", str(f), "--steps-format", "otlp-json")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert f"{f}:2: not JSON" in p.stderr and "ExportTraceServiceRequest" in p.stderr
    assert "Traceback" not in p.stderr
    # spans but none of them GenAI
    g = write_lines(tmp_path / "plain.jsonl", [request([span(new_id(32), "GET /", 1.0, 2.0)])])
    p = wattprof_in_process("import", str(tmp_path / "run2"), "--steps", str(g))
    assert p.returncode == 2 and "no GenAI model-call or tool spans" in p.stderr and p.stderr.count("\n") == 1

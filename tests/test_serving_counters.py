"""The prometheus collector against a small fake vLLM server replaying a metrics sequence made from
the real H100 serving capture's requests, while the capture's NVML trace replays."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import H100_SERVE, fixture_dir, wattprof, wattprof_in_process

from wattprof.clock import ManualClock
from wattprof.collectors.nvml import NvmlReplayCollector
from wattprof.collectors.prometheus import PrometheusCollector, parse_text
from wattprof.errors import InputError
from wattprof.recording.recorder import Recorder
from wattprof.reports.build import build_report
from wattprof.run import Run, RunWriter

LABELS = 'engine="0",model_name="gpt2-24l"'


def vllm_text(prompt: float, gen: float, running: int) -> str:
    """A /metrics page in vLLM's shape (prometheus_client exposition, v1 engine metric names)."""
    return "\n".join([
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{LABELS}}} {float(running)}",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{LABELS}}} {prompt}",
        f"vllm:prompt_tokens_created{{{LABELS}}} 1.7953490876e+09",
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{LABELS}}} {gen}",
        f"vllm:generation_tokens_created{{{LABELS}}} 1.7953490876e+09",
        "# TYPE vllm:e2e_request_latency_seconds histogram",
        f'vllm:e2e_request_latency_seconds_bucket{{{LABELS},le="+Inf"}} 3.0',
        "",
    ])


class Sequence:
    """The server's counters at time t: output tokens produced evenly over each request's decode, the
    prompt counted at its first token. Down in [down0, down1); restarted at down0 (counters from 0)."""

    def __init__(self, reqs: list[dict], down0: float, down1: float) -> None:
        self.r = pd.DataFrame(reqs)
        self.down0, self.down1 = down0, down1

    def raw(self, t: float) -> tuple[float, float, int]:
        r = self.r
        frac = np.clip((t - r["t_first_token"]) / (r["t_end"] - r["t_first_token"]), 0, 1)
        gen = float(np.floor(frac * r["output_tokens"]).sum())
        prompt = float(r.loc[r["t_first_token"] <= t, "prompt_tokens"].sum())
        running = int(((r["t_start"] <= t) & (r["t_end"] > t)).sum())
        return prompt, gen, running

    def at(self, t: float) -> tuple[float, float, int] | None:
        if self.down0 <= t < self.down1:
            return None
        p, g, n = self.raw(t)
        if t >= self.down1:  # the restarted server counts from zero
            p0, g0, _ = self.raw(self.down0)
            p, g = p - p0, g - g0
        return p, g, n


def serve(seq: Sequence, clock: ManualClock) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            v = seq.at(clock.time())
            if v is None:
                self.send_error(503)
                return
            body = vllm_text(*v).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def test_parse_sums_label_sets_and_ignores_created_and_comments() -> None:
    text = vllm_text(10, 20, 3) + 'vllm:generation_tokens_total{engine="1",model_name="b"} 5\n'
    assert parse_text(text, {"vllm:generation_tokens_total", "vllm:prompt_tokens_total"}) == {
        "vllm:generation_tokens_total": 25.0, "vllm:prompt_tokens_total": 10.0}


def test_token_rates_and_j_per_token_from_a_fake_vllm_with_a_restart(tmp_path: Path) -> None:
    d = fixture_dir(H100_SERVE)
    reqs = [json.loads(x) for x in (d / "requests_wallclock.jsonl").read_text().splitlines() if x.strip()]
    clock = ManualClock()
    nvml = NvmlReplayCollector(clock=clock, trace=str(d / "nvml_samples_10ms.csv"), start="trace")
    t_first, t_last = nvml.nvml.trace.t_first, nvml.nvml.trace.t_last
    down0, down1 = 1795349130.0, 1795349133.0  # the server goes away mid-serve_b8 and comes back restarted
    seq = Sequence(reqs, down0, down1)
    server = serve(seq, clock)
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        clock.set(t_first)
        w = RunWriter.create(tmp_path / "run", name="serve", clock_time=t_first)
        prom = PrometheusCollector(clock=clock, url=url, preset="vllm", every=0.5)
        rec = Recorder(w, [nvml, prom], interval=0.1, clock=clock)
        rec.start(background=False)
        scrapes = []
        for t in np.arange(t_first, t_last, 0.1):
            clock.set(float(t))
            before = prom._next_t
            rec.sample_once()
            if prom._next_t != before:
                scrapes.append(float(t))
        rec.stop()
        w.finalize(status="finished", exit_code=0, ended_at=t_last)
    finally:
        server.shutdown()
    run = Run.open(tmp_path / "run")
    kinds = run.events["kind"].tolist()
    assert kinds.count("counter_reset") >= 1 and kinds.count("server_unreachable") == 1
    assert kinds.count("server_back") == 1 and "collector_error" not in kinds
    # what the server's counters said, with the restart counted from zero
    up = [t for t in scrapes if seq.at(t) is not None]
    expected_out = 0.0
    for a, b in zip(up[:-1], up[1:], strict=True):
        ga, gb = seq.at(a)[1], seq.at(b)[1]
        expected_out += gb - ga if gb >= ga else gb
    assert expected_out > 3000
    rep = build_report(run)
    assert [x.device for x in rep.devices] == ["gpu:0"]  # the server is no power device
    (s,) = rep.serving
    assert s["output_tokens"] == pytest.approx(expected_out, rel=1e-9)
    df = pd.read_csv(d / "nvml_samples_10ms.csv")
    e_true = float(np.interp(s["t_end"], df["t"], df["energy_mj"]) - np.interp(s["t_start"], df["t"], df["energy_mj"]))
    assert s["energy_j"] == pytest.approx(e_true / 1e3, rel=0.01)
    assert s["j_per_output_token"] == pytest.approx(e_true / 1e3 / expected_out, rel=0.01)
    busy = [w for w in s["windows"] if w["output_tokens"] > 0]
    assert len(busy) >= 6 and all(w["j_per_output_token"] > 0 for w in busy)
    running = run.samples.dropna(subset=["requests_running"])
    assert running["requests_running"].max() == 8
    text = wattprof_in_process("report", str(tmp_path / "run"), check=True).stdout
    assert "Serving engines (token counters)" in text and "serve:vllm" in text


def test_a_closed_port_is_an_event_not_a_failure(tmp_path: Path) -> None:
    clock = ManualClock(1.8e9)
    w = RunWriter.create(tmp_path / "run", name="x", clock_time=1.8e9)
    prom = PrometheusCollector(clock=clock, url="http://127.0.0.1:9/metrics", preset="vllm")
    rec = Recorder(w, [prom], interval=0.5, clock=clock)
    rec.start(background=False)
    for _ in range(6):
        rec.sample_once()
        clock.advance(0.5)
    rec.stop()
    w.finalize(status="finished", exit_code=0)
    kinds = Run.open(tmp_path / "run").events["kind"].tolist()
    assert kinds == ["server_unreachable"]


@pytest.mark.parametrize(("spec", "why"), [
    ("prometheus", "url= is required"),
    ("prometheus:url=ftp://x/metrics,preset=vllm", "not an http(s) URL"),
    ("prometheus:url=http://127.0.0.1:8000/metrics,preset=triton", "unknown preset 'triton'"),
    ("prometheus:url=http://127.0.0.1:8000/metrics", "give preset=vllm|sglang|tgi"),
])
def test_bad_specs_are_one_line_usage_errors(tmp_path: Path, spec: str, why: str) -> None:
    from wattprof.collectors.base import create

    with pytest.raises(InputError, match=re.escape(why)):
        create(spec)
    p = wattprof("record", "-q", "-o", str(tmp_path / "r"), "-c", spec, "--", "true")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and why in p.stderr


def test_live_status_and_metrics_endpoint_show_the_serving_rate(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    from urllib.request import urlopen

    from wattprof.exporters.prometheus import LiveMetricsServer
    from wattprof.live import RecorderStats, render

    d = fixture_dir(H100_SERVE)
    reqs = [json.loads(x) for x in (d / "requests_wallclock.jsonl").read_text().splitlines() if x.strip()]
    clock = ManualClock()
    nvml = NvmlReplayCollector(clock=clock, trace=str(d / "nvml_samples_10ms.csv"), start="trace")
    seq = Sequence(reqs, 0.0, 0.0)
    server = serve(seq, clock)
    metrics = None
    try:
        t = 1795349140.0  # serve_b8: eight requests decoding
        clock.set(t)
        w = RunWriter.create(tmp_path / "run", name="live", clock_time=t)
        prom = PrometheusCollector(clock=clock, url=f"http://127.0.0.1:{server.server_address[1]}/metrics",
                                   preset="vllm", every=0.5)
        rec = Recorder(w, [nvml, prom], interval=0.1, clock=clock)
        rec.start(background=False)
        for k in range(12):
            clock.set(t + 0.1 * k)
            rec.sample_once()
        line = render(RecorderStats(rec)(), None)
        expected = (seq.raw(t + 1.0)[1] - seq.raw(t + 0.5)[1]) / 0.5
        assert f"serving {expected:.0f} tok/s" in line and "J/output token" in line
        metrics = LiveMetricsServer.for_stats(rec.stats)
        port = metrics.start(port=0)
        page = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert f'wattprof_serve_tokens_per_second{{device="serve:vllm",kind="output"}} {expected}' in page
        assert 'wattprof_serve_energy_per_output_token_joules{device="serve:vllm"}' in page
        rec.stop()
        w.finalize(status="finished", exit_code=0)
    finally:
        if metrics is not None:
            metrics.stop()
        server.shutdown()

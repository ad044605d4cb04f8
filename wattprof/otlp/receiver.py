"""An OTLP/HTTP trace receiver on 127.0.0.1 that writes an agent stack's spans into a run.

``POST /v1/traces`` with a protobuf (``application/x-protobuf``) or JSON (``application/json``)
``ExportTraceServiceRequest``, optionally gzip-compressed, as the OTLP specification defines
them (opentelemetry-proto, docs/specification.md "OTLP/HTTP"). Answers 200 with an
``ExportTraceServiceResponse`` (``partial_success`` when spans were rejected), 400 for a body
that is not one, 413 over :data:`MAX_BODY_BYTES`, 415 for another content type, 404 elsewhere.

Spans go to ``otlp-spans-<pid>.jsonl`` in the run as they arrive (nothing is held in memory);
at :meth:`OtlpReceiver.stop` they are mapped to steps (:mod:`wattprof.formats.genai`) and written
to ``steps-otlp-<pid>.jsonl``. A flood is bounded: past ``max_spans`` spans are rejected (and
counted). Problems are events of the run (``otlp_rejected``, ``otlp_bad_span``, rate-limited) and
the summary an ``otlp_receiver`` event; the recording and the traced program go on whatever
arrives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..formats import otlp_json
from ..formats.otlp_json import Span, SpanError
from ..run import JsonlAppender
from . import protobuf

log = logging.getLogger(__name__)

DEFAULT_PORT = 4318
HOST = "127.0.0.1"
PATH = "/v1/traces"
MAX_BODY_BYTES = 8 << 20  # per request, compressed or not
MAX_SPANS = 200_000  # per run
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def _rate_limited(n: int) -> bool:
    return n <= 3 or n % 100 == 0


@dataclass
class ReceiverStats:
    requests: int = 0
    spans: int = 0
    rejected_bodies: int = 0
    rejected_spans: int = 0
    problems: Counter = field(default_factory=Counter)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("otlp: " + format, *args)

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str, *, close: bool = False) -> None:
        self.server.receiver.reject_body(message)
        if close:
            self.close_connection = True
        body = json.dumps({"code": 3, "message": message}).encode()
        self._reply(code, body, "application/json")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._error(405 if self.path.split("?")[0] == PATH else 404, f"use POST {PATH}")

    def do_POST(self) -> None:  # noqa: N802
        r = self.server.receiver
        try:
            if self.path.split("?")[0] != PATH:
                self._error(404, f"unknown path {self.path[:80]!r} (expected {PATH})", close=True)
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.strip().isdigit():
                self._error(411, "Content-Length required", close=True)
                return
            n = int(length)
            if n > r.max_body:
                self._error(413, f"body of {n} bytes over the {r.max_body}-byte limit", close=True)
                return
            body = self.rfile.read(n)
            enc = (self.headers.get("Content-Encoding") or "").strip().lower()
            if enc == "gzip":
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    body = d.decompress(body, r.max_body)
                except zlib.error as e:
                    self._error(400, f"bad gzip body ({e})")
                    return
                if d.unconsumed_tail:
                    self._error(413, f"body over the {r.max_body}-byte limit once decompressed")
                    return
            elif enc not in ("", "identity"):
                self._error(415, f"unsupported Content-Encoding {enc!r} (expected gzip or none)")
                return
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype == "application/x-protobuf":
                try:
                    items = list(protobuf.spans_from_request(body))
                except SpanError as e:
                    self._error(400, f"not an OTLP protobuf ExportTraceServiceRequest: {e}")
                    return
            elif ctype == "application/json":
                try:
                    items = list(otlp_json.spans_from_request(otlp_json.parse_body(body)))
                except SpanError as e:
                    self._error(400, f"not an OTLP JSON ExportTraceServiceRequest: {e}")
                    return
            else:
                self._error(415, f"unsupported Content-Type {ctype[:60]!r} (expected application/x-protobuf "
                                 "or application/json)")
                return
            rejected, why = r.take(items)
            if ctype == "application/json":
                resp = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": why}} if rejected else {}
                self._reply(200, json.dumps(resp).encode(), "application/json")
            else:
                self._reply(200, protobuf.partial_success(rejected, why), "application/x-protobuf")
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the receiver never stops the run; the error is recorded
            r.event("otlp_error", f"OTLP receiver: {type(e).__name__}: {e}")
            with contextlib.suppress(OSError):
                self._reply(500, b'{"code": 13, "message": "internal error"}', "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    receiver: OtlpReceiver


class OtlpReceiver:
    """Receive spans for the run in ``run_dir`` (start, point the traced program at
    :attr:`endpoint`, stop to write the steps)."""

    def __init__(self, run_dir: str | Path, *, port: int = DEFAULT_PORT, host: str = HOST,
                 max_body: int = MAX_BODY_BYTES, max_spans: int = MAX_SPANS, timeout_s: float = 30.0) -> None:
        self.run_dir = Path(run_dir)
        self.port = int(port)
        self.host = host
        self.max_body = int(max_body)
        self.max_spans = int(max_spans)
        self.timeout_s = timeout_s
        self.stats = ReceiverStats()
        self._lock = threading.Lock()
        self._limit_warned = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._spans: JsonlAppender | None = None
        self._events: JsonlAppender | None = None
        tag = f"{os.getpid()}"
        self.spans_path = self.run_dir / f"otlp-spans-{tag}.jsonl"
        self.steps_path = self.run_dir / f"steps-otlp-{tag}.jsonl"
        self.events_path = self.run_dir / f"events-otlp-{tag}.jsonl"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    def start(self) -> int:
        """Bind and serve in a background thread; return the port. A busy port is an InputError."""
        try:
            server = _Server((self.host, self.port), _Handler)
        except OSError as e:
            raise InputError(f"--otlp: cannot listen on {self.host}:{self.port} ({e.strerror or e}); "
                             "pass another port (--otlp=PORT, 0 for any free one)") from None
        server.receiver = self
        server.timeout = self.timeout_s
        self._server = server
        self.port = server.server_address[1]
        self._spans = JsonlAppender(self.spans_path, strict=False)
        self._events = JsonlAppender(self.events_path, strict=False)
        self._thread = threading.Thread(target=server.serve_forever, name="wattprof-otlp", daemon=True)
        self._thread.start()
        return self.port

    # ---- called by the handler threads ----------------------------------------------------------
    def event(self, kind: str, message: str, **extra: Any) -> None:
        if self._events is not None:
            self._events.append({"t": time.time(), "kind": kind, "message": message, **extra})

    def reject_body(self, message: str) -> None:
        with self._lock:
            self.stats.rejected_bodies += 1
            n = self.stats.rejected_bodies
        if _rate_limited(n):
            self.event("otlp_rejected", f"OTLP request rejected ({n} so far): {message}")

    def take(self, items: list[Span | SpanError]) -> tuple[int, str]:
        """Store the good spans (up to the run's limit); return (rejected, why)."""
        good = [s for s in items if isinstance(s, Span)]
        bad = [e for e in items if isinstance(e, SpanError)]
        with self._lock:
            self.stats.requests += 1
            room = max(self.max_spans - self.stats.spans, 0)
            keep, over = good[:room], len(good) - min(len(good), room)
            self.stats.spans += len(keep)
            self.stats.rejected_spans += len(bad) + over
            for e in bad:
                self.stats.problems[str(e)] += 1
            first_over = bool(over) and not self._limit_warned
            self._limit_warned = self._limit_warned or first_over
        for s in keep:
            assert self._spans is not None
            self._spans.append(s.to_dict())
        for e in bad[:1]:
            if _rate_limited(self.stats.problems[str(e)]):
                self.event("otlp_bad_span", f"OTLP span rejected: {e}")
        if first_over:
            self.event("otlp_limit", f"more than {self.max_spans} spans: the rest are rejected (bounded memory "
                                     "and disk); raise max_spans if this is expected")
        why = "; ".join(sorted({str(e) for e in bad})[:3])
        if over:
            why = (why + "; " if why else "") + f"over the run's limit of {self.max_spans} spans"
        return len(bad) + over, why

    # ---- lifecycle --------------------------------------------------------------------------------
    def stop(self) -> dict[str, Any]:
        """Stop serving, map the spans to steps and write them; return a summary (also an event)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._spans is not None:
            self._spans.close()
            self._spans = None
        summary: dict[str, Any] = {"spans": self.stats.spans, "requests": self.stats.requests,
                                   "rejected_requests": self.stats.rejected_bodies,
                                   "rejected_spans": self.stats.rejected_spans, "steps": 0, "tasks": 0, "flags": []}
        try:
            summary.update(self._write_steps())
        except OSError as e:
            summary["flags"].append(f"could not write the steps of the spans: {e.strerror or e}")
        from ..formats.genai import SEMCONV_VERSION

        msg = (f"OTLP receiver: {summary['spans']} span(s) in {summary['requests']} request(s), "
               f"{summary['steps']} step(s) in {summary['tasks']} task(s)")
        if summary["rejected_requests"] or summary["rejected_spans"]:
            msg += f"; rejected {summary['rejected_requests']} request(s) and {summary['rejected_spans']} span(s)"
        self.event("otlp_receiver", msg, semconv=f"gen_ai {SEMCONV_VERSION}", flags=summary["flags"])
        if self._events is not None:
            self._events.close()
            self._events = None
        return summary

    def _write_steps(self) -> dict[str, Any]:
        from ..formats.genai import map_spans

        if not self.spans_path.is_file():
            return {}
        spans: list[Span] = []
        with self.spans_path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    spans.append(Span.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line
        if not spans:
            return {}
        m = map_spans(spans)
        out = JsonlAppender(self.steps_path, strict=False)
        try:
            for row in m.steps:
                out.append(row)
        finally:
            out.close()
        return {"steps": len(m.steps), "tasks": m.tasks, "flags": m.flags}


def child_env(env: dict[str, str], endpoint: str) -> dict[str, str]:
    """``env`` with the traces endpoint pointed at the receiver, unless the user set one."""
    if env.get(ENV_TRACES_ENDPOINT) or env.get(ENV_ENDPOINT):
        return env
    return {**env, ENV_TRACES_ENDPOINT: endpoint}

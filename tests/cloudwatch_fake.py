"""A strict CloudWatch in front of moto: a small HTTP proxy on 127.0.0.1 that enforces the rules of
the real service that moto does not, then forwards the request to moto's server.

Rules (botocore's CloudWatch model and the AWS user guide; REFERENCE.md "AWS CloudWatch"):

- GetMetricData: at most 500 queries and 100,800 data points (queries x window / period) per
  call; a period must be a multiple of 60 for standard-resolution series and 1, 5, 10, 20, 30 or a
  multiple of 60 for high-resolution ones (StorageResolution 1 at PutMetricData).
- PutMetricData: at most 1,000 metric data per call, a body of at most 1 MB, 30 dimensions per
  datum, 150 values per datum; dimension names and values of 1-255 / 1-1024 ASCII characters
  without control characters and with at least one non-whitespace character. A bad datum rejects
  the whole request (nothing of it is stored), as AWS does.
- ListMetrics: a metric is listed only ``list_delay_s`` after it was first published (AWS: up to
  15 minutes), on the proxy's clock (injectable, so tests move it instead of waiting).

Only the JSON protocol botocore speaks without the optional CBOR package is understood; any other
content type is refused (a test would then notice it bypasses the rules).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_QUERIES = 500
MAX_POINTS = 100_800
MAX_DATA = 1000
MAX_BODY = 1_000_000
MAX_DIMS = 30
MAX_VALUES = 150
SUB_MINUTE = (1, 5, 10, 20, 30)


class Rejected(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _key(namespace: str, metric: str, dims: list[dict[str, str]] | None) -> tuple:
    return namespace, metric, frozenset((d["Name"], d["Value"]) for d in dims or [])


def check_dimension(d: dict[str, Any], where: str) -> None:
    name, value = d.get("Name", ""), d.get("Value", "")
    for what, text, limit in (("name", name, 255), ("value", value, 1024)):
        if not isinstance(text, str) or not 1 <= len(text) <= limit:
            raise Rejected("InvalidParameterValue", f"{where}: dimension {what} must have 1-{limit} characters")
        if not text.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise Rejected("InvalidParameterValue", f"{where}: dimension {what} {text!r} must be ASCII without "
                                                    "control characters")
        if not text.strip():
            raise Rejected("InvalidParameterValue", f"{where}: dimension {what} must contain a non-whitespace "
                                                    "character")


class StrictCloudWatch:
    """The proxy. ``url`` after :meth:`start`; ``calls`` lists (operation, summary) it passed on."""

    def __init__(self, upstream: str, *, clock: Callable[[], float] = time.time, list_delay_s: float = 0.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.clock = clock
        self.list_delay_s = list_delay_s
        self.first_seen: dict[tuple, float] = {}
        self.resolution: dict[tuple, int] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.first_seen.clear()
            self.resolution.clear()
            self.calls.clear()
            self.rejected.clear()

    # ---- one request ---------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        target = h.headers.get("X-Amz-Target", "")
        op = target.rpartition(".")[2]
        try:
            if not h.headers.get("Content-Type", "").startswith("application/x-amz-json"):
                raise Rejected("UnsupportedProtocol", f"the strict fake understands JSON only, not "
                                                      f"{h.headers.get('Content-Type')!r}")
            params = json.loads(body or b"{}")
            summary = self._check(op, params, len(body))
        except Rejected as e:
            with self._lock:
                self.rejected.append((op, e.message))
            return self._reply(h, e.status, {"__type": e.code, "message": e.message},
                               {"x-amzn-query-error": f"{e.code};Sender"})
        status, headers, out = self._forward(h, body)
        if op == "ListMetrics" and status == 200:
            out = self._hide_unlisted(out)
        if op == "PutMetricData" and status == 200:
            self._remember(params)
        with self._lock:
            self.calls.append((op, summary))
        self._reply(h, status, out, headers, raw=True)

    def _check(self, op: str, p: dict[str, Any], size: int) -> dict[str, Any]:
        if op == "PutMetricData":
            data = p.get("MetricData") or []
            if size > MAX_BODY:
                raise Rejected("RequestEntityTooLarge", f"request of {size} bytes: at most {MAX_BODY}", 413)
            if len(data) > MAX_DATA:
                raise Rejected("InvalidParameterValue", f"{len(data)} metric data: at most {MAX_DATA} per call")
            for i, d in enumerate(data):
                dims = d.get("Dimensions") or []
                if len(dims) > MAX_DIMS:
                    raise Rejected("InvalidParameterValue", f"MetricData.member.{i + 1}: {len(dims)} dimensions")
                for j, dim in enumerate(dims):
                    check_dimension(dim, f"MetricData.member.{i + 1}.Dimensions.member.{j + 1}")
                if len(d.get("Values") or []) > MAX_VALUES:
                    raise Rejected("InvalidParameterValue", f"MetricData.member.{i + 1}: more than {MAX_VALUES} values")
            return {"data": len(data), "bytes": size}
        if op == "GetMetricData":
            queries = p.get("MetricDataQueries") or []
            if len(queries) > MAX_QUERIES:
                raise Rejected("ValidationError", f"{len(queries)} queries: at most {MAX_QUERIES} per call")
            span = float(p["EndTime"]) - float(p["StartTime"])
            points = 0
            periods = set()
            for q in queries:
                ms = q.get("MetricStat")
                if not ms:
                    continue
                period = int(ms["Period"])
                m = ms["Metric"]
                res = self.resolution.get(_key(m.get("Namespace", ""), m["MetricName"], m.get("Dimensions")), 60)
                ok = period % 60 == 0 if period >= 60 else (res == 1 and period in SUB_MINUTE)
                if not ok:
                    raise Rejected("InvalidParameterCombination",
                                   f"query {q.get('Id')}: period {period} s is not valid for "
                                   f"{'high' if res == 1 else 'standard'}-resolution metric {m['MetricName']}")
                points += math.ceil(span / period)
                periods.add(period)
            if points > MAX_POINTS:
                raise Rejected("ValidationError", f"{points} data points requested: at most {MAX_POINTS} per call")
            return {"queries": len(queries), "points": points, "periods": sorted(periods)}
        return {}

    def _remember(self, p: dict[str, Any]) -> None:
        now = self.clock()
        with self._lock:
            for d in p.get("MetricData") or []:
                k = _key(p.get("Namespace", ""), d["MetricName"], d.get("Dimensions"))
                self.first_seen.setdefault(k, now)
                self.resolution.setdefault(k, int(d.get("StorageResolution") or 60))

    def _hide_unlisted(self, out: bytes) -> bytes:
        doc = json.loads(out or b"{}")
        now = self.clock()
        keep = []
        for m in doc.get("Metrics", []):
            seen = self.first_seen.get(_key(m.get("Namespace", ""), m["MetricName"], m.get("Dimensions")))
            if seen is None or now >= seen + self.list_delay_s:
                keep.append(m)
        doc["Metrics"] = keep
        return json.dumps(doc).encode()

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        req = urllib.request.Request(self.upstream + h.path, data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str], *,
               raw: bool = False) -> None:
        data = body if raw else json.dumps(body).encode()
        h.send_response(status)
        skip = {"content-length", "transfer-encoding", "connection", "date", "server"}
        for k, v in headers.items():
            if k.lower() not in skip:
                h.send_header(k, v)
        if not raw:
            h.send_header("Content-Type", "application/x-amz-json-1.0")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

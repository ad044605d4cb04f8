"""OTLP trace export requests in their JSON encoding (OTLP/HTTP JSON, the Collector's file exporter).

One ``ExportTraceServiceRequest`` per line, as the OpenTelemetry Collector's ``file`` exporter
writes them (``{"resourceSpans": [{"resource": ..., "scopeSpans": [{"spans": [...]}]}]}``).
The OTLP JSON rules (opentelemetry-proto, docs/specification.md "JSON Protobuf Encoding"):
``traceId``/``spanId`` are hex strings, 64-bit integers (``startTimeUnixNano``, ``intValue``)
may be strings or numbers, attribute values are ``AnyValue`` objects (``stringValue``,
``intValue``, ``doubleValue``, ``boolValue``, ``arrayValue``, ``kvlistValue``, ``bytesValue``).
The older ``instrumentationLibrarySpans`` key is accepted for ``scopeSpans``.

Pure parsing into :class:`Span` (the receiver's protobuf decoder yields the same), so that
:mod:`wattprof.formats.genai` maps spans to steps the same way whatever the transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Attribute values longer than this are cut (prompts and completions may be in attributes).
MAX_ATTR_CHARS = 256
#: Attributes kept per span (a span with more is flagged, the rest dropped).
MAX_ATTRS = 128


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    t_start: float  # Unix seconds
    t_end: float
    attributes: dict[str, Any] = field(default_factory=dict)
    service: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "parent_id": self.parent_id, "name": self.name,
                "t_start": self.t_start, "t_end": self.t_end, "attributes": self.attributes, "service": self.service}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Span:
        return cls(str(d["trace_id"]), str(d["span_id"]), d.get("parent_id"), str(d.get("name", "")),
                   float(d["t_start"]), float(d["t_end"]), dict(d.get("attributes") or {}), d.get("service"))


class SpanError(ValueError):
    """One span or body is not OTLP; the message says what was expected."""


def _nanos(v: Any, what: str) -> float:
    if isinstance(v, bool) or v is None:
        raise SpanError(f"'{what}' missing (expected Unix nanoseconds)")
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise SpanError(f"'{what}' is {str(v)[:40]!r}, expected Unix nanoseconds") from None
    if n < 0 or n >= 2**64:
        raise SpanError(f"'{what}' is {n}, expected unsigned 64-bit nanoseconds")
    return n / 1e9


def any_value(v: Any, depth: int = 0) -> Any:
    """An OTLP JSON ``AnyValue`` -> a Python value (strings cut to :data:`MAX_ATTR_CHARS`)."""
    if not isinstance(v, dict) or depth > 8:
        return None
    if "stringValue" in v:
        return str(v["stringValue"])[:MAX_ATTR_CHARS]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return None
    if "doubleValue" in v:
        try:
            return float(v["doubleValue"])
        except (TypeError, ValueError):
            return None
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        vals = (v["arrayValue"] or {}).get("values") or []
        return [any_value(x, depth + 1) for x in vals[:32]] if isinstance(vals, list) else None
    if "kvlistValue" in v:
        return attributes((v["kvlistValue"] or {}).get("values"), depth + 1)
    return None


def attributes(kvs: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(kvs, list):
        return {}
    out: dict[str, Any] = {}
    for kv in kvs[:MAX_ATTRS]:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"][:MAX_ATTR_CHARS]] = any_value(kv.get("value"), depth)
    return out


def _id(v: Any, what: str, *, required: bool) -> str | None:
    if v in (None, ""):
        if required:
            raise SpanError(f"'{what}' missing (expected a hex id)")
        return None
    if not isinstance(v, str) or len(v) > 64:
        raise SpanError(f"'{what}' is not a hex id string")
    return v.lower()


def span_from_json(s: Any, service: str | None) -> Span:
    if not isinstance(s, dict):
        raise SpanError("a span is not a JSON object")
    t0 = _nanos(s.get("startTimeUnixNano"), "startTimeUnixNano")
    t1 = _nanos(s.get("endTimeUnixNano"), "endTimeUnixNano")
    return Span(trace_id=_id(s.get("traceId"), "traceId", required=True) or "",
                span_id=_id(s.get("spanId"), "spanId", required=True) or "",
                parent_id=_id(s.get("parentSpanId"), "parentSpanId", required=False),
                name=str(s.get("name", ""))[:MAX_ATTR_CHARS], t_start=t0, t_end=t1,
                attributes=attributes(s.get("attributes")), service=service)


def spans_from_request(req: Any) -> Iterator[Span | SpanError]:
    """The spans of one decoded ``ExportTraceServiceRequest`` (a bad span is yielded as its error,
    so that one bad span never loses the others)."""
    if not isinstance(req, dict) or not isinstance(req.get("resourceSpans", []), list):
        raise SpanError("expected an ExportTraceServiceRequest object with 'resourceSpans'")
    if "resourceSpans" not in req:
        raise SpanError("no 'resourceSpans' key (expected OTLP JSON: one ExportTraceServiceRequest per line)")
    for rs in req["resourceSpans"]:
        if not isinstance(rs, dict):
            yield SpanError("a resourceSpans entry is not an object")
            continue
        res = attributes((rs.get("resource") or {}).get("attributes")) if isinstance(rs.get("resource"), dict) else {}
        service = res.get("service.name")
        scopes = rs.get("scopeSpans", rs.get("instrumentationLibrarySpans")) or []
        if not isinstance(scopes, list):
            yield SpanError("'scopeSpans' is not a list")
            continue
        for sc in scopes:
            spans = sc.get("spans") if isinstance(sc, dict) else None
            if not isinstance(spans, list):
                yield SpanError("a scopeSpans entry has no 'spans' list")
                continue
            for s in spans:
                try:
                    yield span_from_json(s, str(service) if service is not None else None)
                except SpanError as e:
                    yield e


def parse_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpanError(f"not JSON ({getattr(e, 'msg', e)})") from None
    except RecursionError:
        raise SpanError("JSON nested too deeply") from None


def sniff(path: Path) -> bool:
    """Whether the file's first non-blank line looks like an OTLP JSON export request."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for raw in f:
                if raw.strip():
                    head = raw.lstrip()[:4096]
                    return head.startswith("{") and '"resourceSpans"' in head
    except OSError:
        return False
    return False


@dataclass
class SpansFile:
    spans: list[Span]
    #: one line per problem found (bad spans skipped), "FILE:LINE: what"
    problems: list[str]


def read_otlp_json(path: str | Path, *, max_spans: int = 1_000_000) -> SpansFile:
    """All spans of a file-exporter JSON lines file. A line that is not JSON, or not an export
    request, is an :class:`InputError` (file:line); a malformed span inside a valid request is
    skipped and reported in ``problems``."""
    p = Path(path)
    spans: list[Span] = []
    problems: list[str] = []
    try:
        with p.open("rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    req = parse_body(raw)
                    items = list(spans_from_request(req))
                except SpanError as e:
                    raise InputError(f"{e}; expected one OTLP JSON ExportTraceServiceRequest per line",
                                     path=str(p), line=n) from None
                for it in items:
                    if isinstance(it, SpanError):
                        problems.append(f"{p}:{n}: span skipped: {it}")
                    elif len(spans) < max_spans:
                        spans.append(it)
                    else:
                        problems.append(f"{p}:{n}: more than {max_spans} spans: the rest skipped")
                        return SpansFile(spans, problems)
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})", path=str(p)) from None
    if not spans:
        raise InputError("no spans in file (expected OTLP JSON export requests)", path=str(p))
    return SpansFile(spans, problems)

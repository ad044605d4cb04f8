"""A small decoder of OTLP trace export requests in protobuf (no dependency on ``protobuf``).

Only the fields wattprof reads, from opentelemetry-proto's ``trace/v1/trace.proto``,
``common/v1/common.proto`` and ``collector/trace/v1/trace_service.proto``; unknown fields are
skipped as the protobuf wire format allows. Malformed input raises
:class:`~wattprof.formats.otlp_json.SpanError`, never anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from ..formats.otlp_json import MAX_ATTR_CHARS, MAX_ATTRS, Span, SpanError

_MAX_DEPTH = 8


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b):
            raise SpanError("protobuf: truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise SpanError("protobuf: varint too long")


def fields(b: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)``: ints for varint/fixed, bytes for length-delimited."""
    i = 0
    n = len(b)
    while i < n:
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        v: int | bytes
        if num == 0:
            raise SpanError("protobuf: field number 0")
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            if i + 8 > n:
                raise SpanError("protobuf: truncated fixed64")
            v = b[i:i + 8]
            i += 8
        elif wt == 2:
            ln, i = _varint(b, i)
            if i + ln > n:
                raise SpanError("protobuf: length-delimited field runs past the end")
            v = b[i:i + ln]
            i += ln
        elif wt == 5:
            if i + 4 > n:
                raise SpanError("protobuf: truncated fixed32")
            v = b[i:i + 4]
            i += 4
        else:
            raise SpanError(f"protobuf: unsupported wire type {wt}")
        yield num, wt, v


def _str(v: Any) -> str:
    if not isinstance(v, bytes):
        raise SpanError("protobuf: expected a string field")
    return v[:MAX_ATTR_CHARS * 4].decode("utf-8", errors="replace")[:MAX_ATTR_CHARS]


def any_value(b: bytes, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return None
    out: Any = None
    for num, wt, v in fields(b):
        if num == 1 and wt == 2:
            out = _str(v)
        elif num == 2 and wt == 0:
            out = bool(v)
        elif num == 3 and wt == 0:
            out = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 4 and wt == 1:
            out = struct.unpack("<d", v)[0]
        elif num == 5 and wt == 2:
            out = [any_value(x, depth + 1) for n2, w2, x in fields(v) if n2 == 1 and w2 == 2][:32]
        elif num == 6 and wt == 2:
            out = key_values([x for n2, w2, x in fields(v) if n2 == 1 and w2 == 2], depth + 1)
    return out


def key_values(items: list[bytes], depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items[:MAX_ATTRS]:
        key, val = None, None
        for num, wt, v in fields(kv):
            if num == 1 and wt == 2:
                key = _str(v)
            elif num == 2 and wt == 2:
                val = any_value(v, depth)
        if key is not None:
            out[key] = val
    return out


def _span(b: bytes, service: str | None) -> Span:
    trace = span = parent = None
    name = ""
    t0 = t1 = None
    attrs: list[bytes] = []
    for num, wt, v in fields(b):
        if num == 1 and wt == 2:
            trace = v.hex()
        elif num == 2 and wt == 2:
            span = v.hex()
        elif num == 4 and wt == 2:
            parent = v.hex() or None
        elif num == 5 and wt == 2:
            name = _str(v)
        elif num == 7 and wt == 1:
            t0 = int.from_bytes(v, "little") / 1e9
        elif num == 8 and wt == 1:
            t1 = int.from_bytes(v, "little") / 1e9
        elif num == 9 and wt == 2:
            attrs.append(v)
    if not trace or not span:
        raise SpanError("span without trace_id or span_id")
    if t0 is None or t1 is None:
        raise SpanError("span without start_time_unix_nano or end_time_unix_nano")
    if len(trace) > 64 or len(span) > 64 or (parent and len(parent) > 64):
        raise SpanError("span id too long")
    return Span(trace, span, parent, name, t0, t1, key_values(attrs), service)


def spans_from_request(body: bytes) -> Iterator[Span | SpanError]:
    """The spans of one protobuf ``ExportTraceServiceRequest`` (a bad span is yielded as its error).
    A body that is not protobuf at all raises :class:`SpanError`."""
    resource_spans = [v for num, wt, v in fields(body) if num == 1 and wt == 2]
    for rs in resource_spans:
        service = None
        scopes: list[bytes] = []
        for num, wt, v in fields(rs):
            if num == 1 and wt == 2:  # Resource
                attrs = [x for n2, w2, x in fields(v) if n2 == 1 and w2 == 2]
                s = key_values(attrs).get("service.name")
                service = str(s) if s is not None else None
            elif num == 2 and wt == 2:  # ScopeSpans
                scopes.append(v)
        for sc in scopes:
            for num, wt, v in fields(sc):
                if num == 2 and wt == 2:
                    try:
                        yield _span(v, service)
                    except SpanError as e:
                        yield e


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def partial_success(rejected: int, message: str) -> bytes:
    """An ``ExportTraceServiceResponse`` with ``partial_success`` (empty when nothing was rejected)."""
    if not rejected:
        return b""
    msg = message.encode("utf-8")[:1024]
    inner = b"\x08" + _varint_bytes(rejected) + b"\x12" + _varint_bytes(len(msg)) + msg
    return b"\x0a" + _varint_bytes(len(inner)) + inner

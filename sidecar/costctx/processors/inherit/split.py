"""Split an ExportTraceServiceRequest into one-span requests, on the wire bytes (natively in
one call per batch, native/src/inherit_split.rs, with this walk as its fallback and oracle).

Held spans are kept as bytes: the codec extracts them (with their resource and scope) in one
request per batch; the hold, its byte accounting and the journal want one request per span.
Each one-span request keeps its resource, scope and both schema URLs, so concatenated ones
are again a valid request (protobuf merges repeated fields) that a codec scans as a batch.
No protobuf objects: the input is a codec's own output (valid protobuf), walked field by field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from costctx.pdata.wire_count import read_varint

try:
    from costctx_native._core import one_span_requests as native_one_span_requests
except ImportError:  # built without the extension
    native_one_span_requests = None

_LEN = 2


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, start of the field's tag, start of its value, end of the field)."""
    while pos < end:
        start = pos
        tag, pos = read_varint(buf, pos, end)
        wire = tag & 7
        if wire == 0:
            _, pos = read_varint(buf, pos, end)
            yield tag >> 3, start, pos, pos
            continue
        if wire == _LEN:
            length, pos = read_varint(buf, pos, end)
            yield tag >> 3, start, pos, pos + length
            pos += length
            continue
        if wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire} in a codec's output")
        yield tag >> 3, start, start, pos


def _wrap(field: int, body: bytes) -> bytes:
    return _encode_varint((field << 3) | _LEN) + _encode_varint(len(body)) + body


def _around(raw: bytes, at: int, end: int, inner: int) -> tuple[bytes, bytes, list[tuple[int, int, int]]]:
    """The fields of a message before and after its `inner` fields (kept in place, so
    canonical input stays canonical) and the (tag start, value start, end) of each `inner`."""
    before: list[bytes] = []
    after: list[bytes] = []
    found: list[tuple[int, int, int]] = []
    for n, start, value_at, value_end in _fields(raw, at, end):
        if n == inner:
            found.append((start, value_at, value_end))
        else:
            (after if found else before).append(raw[start:value_end])
    return b"".join(before), b"".join(after), found


def _ids(raw: bytes, at: int, end: int) -> bytes:
    trace_id = span_id = None
    for n, _, value_at, value_end in _fields(raw, at, end):
        if n == 1:
            trace_id = raw[value_at:value_end]
        elif n == 2:
            span_id = raw[value_at:value_end]
        if trace_id is not None and span_id is not None:
            break
    return (trace_id or b"") + (span_id or b"")


def one_span_requests(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(trace id + span id, one-span request) per span of `raw`, in request order: in one
    native call (native/src/inherit_split.rs) when the extension is built and the Python
    codec is not forced (COSTCTX_CODEC=python keeps it all in Python, as the fallback runs)."""
    if native_one_span_requests is not None and os.environ.get("COSTCTX_CODEC", "").strip().lower() != "python":
        return native_one_span_requests(raw)
    return python_one_span_requests(raw)


def python_one_span_requests(raw: bytes) -> list[tuple[bytes, bytes]]:
    """`one_span_requests` in Python: the fallback, and the oracle of the native one."""
    out: list[tuple[bytes, bytes]] = []
    for number, _, rs_at, rs_end in _fields(raw, 0, len(raw)):
        if number != 1:  # resource_spans
            continue
        rs_before, rs_after, scopes = _around(raw, rs_at, rs_end, 2)
        for _, ss_at, ss_end in scopes:
            ss_before, ss_after, spans = _around(raw, ss_at, ss_end, 2)
            for start, at, end in spans:
                scope_spans = _wrap(2, ss_before + raw[start:end] + ss_after)
                out.append((_ids(raw, at, end), _wrap(1, rs_before + scope_spans + rs_after)))
    return out

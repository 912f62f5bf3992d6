"""A protobuf reference for the codec interface (pdata/codec/api.py), for differential tests.

Written from the interface's contract alone, on protobuf objects: parse, read the view off
the messages, apply the edits to the messages, SerializeToString. The native codec must
agree with it: equal views, and byte-identical output for canonical input.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from costctx.pdata.codec.api import (
    EMPTY,
    BatchEdits,
    BatchView,
    CodecError,
    KvList,
    ResourceView,
    ScopeView,
    SpanEdits,
    SpanView,
)


def decode_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return EMPTY
    if kind == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return KvList((kv.key, decode_value(kv.value)) for kv in value.kvlist_value.values)
    return getattr(value, kind)


def store_value(target: AnyValue, value: Any) -> None:
    """Write a Python value into an AnyValue: a scalar sets the oneof in place (the message
    keeps its other fields); EMPTY/None, lists and kvlists clear it first."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif value is EMPTY or value is None:
        target.Clear()
        target.SetInParent()
    elif isinstance(value, KvList | dict):
        target.Clear()
        target.kvlist_value.SetInParent()
        for key, item in (value.items() if isinstance(value, dict) else value):
            entry = target.kvlist_value.values.add()
            entry.key = str(key)
            store_value(entry.value, item)
    elif isinstance(value, list | tuple):
        target.Clear()
        target.array_value.SetInParent()
        for item in value:
            store_value(target.array_value.values.add(), item)
    else:
        raise TypeError(type(value).__name__)


def _attrs(attributes, watched: frozenset[str]) -> dict[str, Any]:
    return {kv.key: decode_value(kv.value) for kv in attributes if kv.key in watched}


def _service(attributes) -> str:
    service = "unknown_service"
    for kv in attributes:
        if kv.key == "service.name":
            ok = kv.value.WhichOneof("value") == "string_value" and kv.value.string_value
            service = kv.value.string_value if ok else "unknown_service"
    return service


def apply_edits(attributes, edits: SpanEdits) -> None:
    """Renames, deletes, then sets, each on the last occurrence of its key (the one the view
    reports); a set key not present is appended; setting EMPTY leaves no value field."""
    keys = [kv.key for kv in attributes]
    last = {key: i for i, key in enumerate(keys)}
    for old, new in edits.renames:
        at = last.pop(old, None)
        if at is not None:
            attributes[at].key = new
            last[new] = at
    for at in sorted({last[k] for k in set(edits.deletes) if k in last}, reverse=True):
        del attributes[at]
    current = {kv.key: kv for kv in attributes}
    for key, value in edits.sets:
        kv = current.get(key)
        if kv is None:
            kv = current[key] = attributes.add()
            kv.key = key
        if value is EMPTY:
            kv.ClearField("value")
        else:
            store_value(kv.value, value)


class ReferenceCodec:
    name = "reference"

    def scan(self, raw: bytes, watched: frozenset[str]) -> BatchView:
        try:
            request = ExportTraceServiceRequest.FromString(raw)
        except DecodeError as err:
            raise CodecError(str(err)) from err
        resources, scopes, spans = [], [], []
        for r, rs in enumerate(request.resource_spans):
            attrs = rs.resource.attributes
            resources.append(ResourceView(_service(attrs), rs.schema_url, _attrs(attrs, watched)))
            for ss in rs.scope_spans:
                s = len(scopes)
                scopes.append(ScopeView(r, ss.schema_url, ss.scope.name, ss.scope.version))
                for span in ss.spans:
                    attrs = _attrs(span.attributes, watched)
                    spans.append(
                        SpanView(
                            span.trace_id, span.span_id, span.parent_span_id,
                            span.start_time_unix_nano, span.end_time_unix_nano, r, s,
                            attrs, len(span.attributes),
                            tuple((link.trace_id, link.span_id) for link in span.links),
                            len(span.events), frozenset(attrs), kind=span.kind,
                        )
                    )
        return BatchView(raw, resources, scopes, spans)

    def encode(self, view: BatchView, edits: BatchEdits) -> bytes:
        return self._write(view, edits, keep=lambda i: i not in edits.removed)

    def extract(self, view: BatchView, indices: list[int], edits: BatchEdits) -> bytes:
        chosen = set(indices)
        return self._write(view, edits, keep=chosen.__contains__)

    def materialize(self, view: BatchView, index: int) -> Span:
        request = ExportTraceServiceRequest.FromString(view.raw)
        spans = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
        return spans[index]

    def _write(self, view: BatchView, edits: BatchEdits, keep) -> bytes:
        """Scopes and resources emptied here are dropped; ones that arrived empty stay."""
        request = ExportTraceServiceRequest.FromString(view.raw)
        i = 0
        kept_resources = []
        for r, rs in enumerate(request.resource_spans):
            if r in edits.resources:
                apply_edits(rs.resource.attributes, edits.resources[r])
            kept_scopes, dropped = [], 0
            for ss in rs.scope_spans:
                had = len(ss.spans)
                kept_spans = []
                for span in ss.spans:
                    if keep(i):
                        span_edits = edits.spans.get(i)
                        if span_edits is not None:
                            if span_edits.replace is not None:
                                span.Clear()
                                span.MergeFromString(span_edits.replace)
                            else:
                                apply_edits(span.attributes, span_edits)
                        kept_spans.append(span)
                    i += 1
                if not kept_spans and had:
                    dropped += 1
                    continue
                copies = [Span() for _ in kept_spans]
                for copy, span in zip(copies, kept_spans, strict=True):
                    copy.CopyFrom(span)
                del ss.spans[:]
                ss.spans.extend(copies)
                kept_scopes.append(ss)
            if not kept_scopes and dropped:
                continue
            copy = type(rs)()
            copy.CopyFrom(rs)
            del copy.scope_spans[:]
            copy.scope_spans.extend(kept_scopes)
            kept_resources.append(copy)
        del request.resource_spans[:]
        request.resource_spans.extend(kept_resources)
        return request.SerializeToString()

"""Put released spans back into an OTLP request, each under a copy of its resource and scope."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from costctx.pdata.batch import ResourceView, SpanRecord
from costctx.processors.inherit.hold import HeldSpan, Origin


class Regrouper:
    """Appends released spans to `request`, one ResourceSpans/ScopeSpans per origin.

    Used on the batch being processed (spans released because their ancestor arrived in it,
    or released early on overflow) and on fresh requests for timeouts and shutdown.
    """

    def __init__(self, request: ExportTraceServiceRequest) -> None:
        self.request = request
        self.records: list[SpanRecord] = []
        self._groups: dict[int, tuple[ResourceView, ScopeSpans]] = {}

    def add(self, held: HeldSpan) -> SpanRecord:
        origin = held.origin
        assert origin is not None and held.span is not None
        group = self._groups.get(id(origin))
        if group is None:
            group = self._groups[id(origin)] = self._open(origin)
        view, scope_spans = group
        span = scope_spans.spans.add()
        span.CopyFrom(held.span)
        rec = SpanRecord(span, view, scope_spans)
        # Notes earlier processors left (e.g. renamed keys) travel with the span.
        rec.notes = held.notes
        self.records.append(rec)
        return rec

    def _open(self, origin: Origin) -> tuple[ResourceView, ScopeSpans]:
        resource_spans = self.request.resource_spans.add()
        resource_spans.resource.CopyFrom(origin.resource)
        resource_spans.schema_url = origin.resource_schema_url
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.CopyFrom(origin.scope)
        scope_spans.schema_url = origin.scope_schema_url
        return ResourceView(resource_spans), scope_spans

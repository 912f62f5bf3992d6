"""Held spans as one-span requests, split on the wire (sidecar/costctx/processors/inherit/split.py)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.processors.inherit.split import one_span_requests


def _request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(2):
        resource_spans = request.resource_spans.add(schema_url=f"https://r{r}")
        resource_spans.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        for s in range(2):
            scope_spans = resource_spans.scope_spans.add(schema_url=f"https://s{r}{s}")
            scope_spans.scope.name = f"scope{r}{s}"
            for i in range(3):
                span = scope_spans.spans.add(trace_id=bytes([r + 1]) * 16, span_id=bytes([s, i + 1]) * 4,
                                             name=f"span{r}{s}{i}", kind=3)
                span.attributes.add(key="k").value.int_value = i
    return request


def test_each_span_keeps_its_resource_scope_and_schema_urls_and_stays_canonical():
    request = _request()
    parts = one_span_requests(request.SerializeToString())
    assert len(parts) == 12
    spans = [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    for (key, payload), (rs, ss, span) in zip(parts, spans, strict=True):
        one = ExportTraceServiceRequest.FromString(payload)
        assert key == span.trace_id + span.span_id
        assert one.SerializeToString() == payload  # canonical: fields in number order
        (got_rs,) = one.resource_spans
        (got_ss,) = got_rs.scope_spans
        assert got_rs.resource == rs.resource and got_rs.schema_url == rs.schema_url
        assert got_ss.scope == ss.scope and got_ss.schema_url == ss.schema_url
        assert list(got_ss.spans) == [span]


def test_concatenated_parts_are_the_request_again_span_for_span():
    request = _request()
    parts = one_span_requests(request.SerializeToString())
    joined = ExportTraceServiceRequest.FromString(b"".join(payload for _, payload in parts))
    assert [s for rs in joined.resource_spans for ss in rs.scope_spans for s in ss.spans] == \
        [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]

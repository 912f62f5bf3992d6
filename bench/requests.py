"""Hand-built OTLP trace requests for the per-processor micro-benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.attributes import set_any_value


def build_request(attribute_sets: Sequence[dict], spans: int, trace_round: int | None = None) -> bytes:
    """`spans` spans of one resource ("bench"), cycling through `attribute_sets`.

    Span i is alone in trace i, unless `trace_round` is given: then every span shares that
    round's trace id (fresh ids each round, so resend guards never match)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bench"
    ss = rs.scope_spans.add()
    for i in range(spans):
        span = ss.spans.add()
        span.name = f"span-{i}"
        span.trace_id = (i if trace_round is None else trace_round).to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
        span.start_time_unix_nano, span.end_time_unix_nano = 1_000, 2_000
        for key, value in attribute_sets[i % len(attribute_sets)].items():
            kv = span.attributes.add()
            kv.key = key
            set_any_value(kv.value, value)
    return request.SerializeToString()

"""The two-sidecar workload (bench/run.py's two-sidecar point): service A's spans and service B's.

Per trace, A sends one CLIENT span carrying the whole envelope (its sidecar registers it in the
shared registry, for the trace and for that span); B sends `fanout` model-call spans whose parent
is that CLIENT span and which carry `traceparent` only: no envelope key at all. B's sidecar
knows nothing of the parent and asks the registry (on) or holds and gives up (off).

Trace, workflow and request ids start with bench/workload.py's ID_MARKER, so the load generator
gives each pass over a pool fresh ids; `a_requests_for_cycle` gives A's pool for one such pass.
"""

from __future__ import annotations

import struct

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.workload import BASE_TIME_NS, ID_MARKER, _kv, marker_for

MODEL = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
         "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 1500,
         "gen_ai.usage.output_tokens": 300}


def _envelope(n: int) -> dict[str, object]:
    tag = f"{ID_MARKER.decode()}-t{n}"
    return {"workflow.id": f"wf-{tag}", "workflow.name": "research", "request.id": f"req-{tag}",
            "owner.tenant": ("acme", "globex", "initech")[n % 3], "owner.feature": "research",
            "policy.id": "default-budget"}


def _request(service: str, spans: list[Span]) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", service))
    rs.scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


def build(traces: int, fanout: int, spans_per_batch: int) -> tuple[list[bytes], list[bytes]]:
    """(A's requests, B's requests), `spans_per_batch` spans each (B's pool: traces x fanout spans)."""
    a_spans: list[Span] = []
    b_spans: list[Span] = []
    for n in range(traces):
        trace_id = ID_MARKER + struct.pack(">Q", n + 1)
        parent_id = struct.pack(">Q", (n + 1) | (1 << 62))
        start = BASE_TIME_NS + n * 1_000_000
        caller = Span(trace_id=trace_id, span_id=parent_id, name="POST /b/plan", kind=Span.SPAN_KIND_CLIENT,
                      start_time_unix_nano=start, end_time_unix_nano=start + 50_000_000)
        caller.parent_span_id = struct.pack(">Q", (n + 1) | (1 << 61))  # A's root: not sent, A's business
        caller.attributes.extend(_kv(k, v) for k, v in _envelope(n).items())
        a_spans.append(caller)
        for i in range(fanout):
            begin = start + i * 2_000_000
            span = Span(trace_id=trace_id, span_id=struct.pack(">Q", (n + 1) << 8 | i | (1 << 60)),
                        parent_span_id=parent_id, name="chat gpt-4o", kind=Span.SPAN_KIND_CLIENT,
                        start_time_unix_nano=begin, end_time_unix_nano=begin + 9_000_000)
            span.attributes.extend(_kv(k, v) for k, v in MODEL.items())
            b_spans.append(span)

    def chunks(spans: list[Span], service: str) -> list[bytes]:
        return [_request(service, spans[i:i + spans_per_batch]) for i in range(0, len(spans), spans_per_batch)]

    return chunks(a_spans, "service-a"), chunks(b_spans, "service-b")


def a_requests_for_cycle(a_requests: list[bytes], cycle: int) -> list[bytes]:
    """A's pool as the load generator rewrites B's on pass `cycle` (the same fresh ids)."""
    return a_requests if cycle == 0 else [body.replace(ID_MARKER, marker_for(cycle)) for body in a_requests]

"""The real OpenTelemetry SDK sends through the sidecar to a real sink: everything arrives intact."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, TraceFlags

from tests.support.sdk import tracer_provider

ENVELOPE = {"workflow.id": "wf-1", "request.id": "req-1", "owner.tenant": "acme", "owner.feature": "chat"}


def _send_workload(provider) -> dict[str, int]:
    """A root with the envelope, a child without it, an event and a link. Returns span ids by name."""
    tracer = provider.get_tracer("e2e.scope", "2.5.0")
    linked = SpanContext(trace_id=0xABCDEF, span_id=0x1234, is_remote=True, trace_flags=TraceFlags(1))
    ids = {}
    with tracer.start_as_current_span("root", attributes=ENVELOPE, kind=trace.SpanKind.SERVER) as root:
        ids["root"] = root.get_span_context().span_id
        with tracer.start_as_current_span(
            "child",
            links=[Link(linked, {"link.kind": "follows"})],
            attributes={"gen_ai.request.model": "gpt-4o", "n": 7, "ratio": 0.5, "ok": True, "tags": ["a", "b"]},
        ) as child:
            child.add_event("retrying", {"attempt": 2})
            ids["child"] = child.get_span_context().span_id
        ids["trace"] = root.get_span_context().trace_id
    provider.force_flush()
    provider.shutdown()
    return ids


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_spans_arrive_intact_with_envelope_stamps(make_sidecar, sink, transport):
    runner = make_sidecar(processors=["envelope"])
    side = runner.sidecar
    port = {"grpc_port": side.grpc_port} if transport == "grpc" else {"http_port": side.http_port}
    provider = tracer_provider(**port, service="checkout", resource_attributes={"deployment.environment": "test"})
    ids = _send_workload(provider)

    assert sink.wait_for_spans(2)
    spans = {s.name: s for s in sink.spans()}
    root, child = spans["root"], spans["child"]

    # ids and parentage
    assert root.trace_id == child.trace_id == f"{ids['trace']:032x}"
    assert root.span_id == f"{ids['root']:016x}"
    assert child.span_id == f"{ids['child']:016x}"
    assert child.parent_span_id == root.span_id
    # resource and scope
    assert root.resource["service.name"] == "checkout"
    assert root.resource["deployment.environment"] == "test"
    assert child.scope == "e2e.scope"
    # attributes of every type, events and links
    assert child.attributes["n"] == 7 and child.attributes["ratio"] == 0.5 and child.attributes["ok"] is True
    assert child.attributes["tags"] == ["a", "b"]
    assert child.events == [("retrying", {"attempt": 2})]
    assert child.links == [(f"{0xABCDEF:032x}", f"{0x1234:016x}", {"link.kind": "follows"})]
    assert child.end_time_unix_nano >= child.start_time_unix_nano > 0

    # envelope stamps: the root carries its context, the child lacks all of it
    for span in (root, child):
        assert span.attributes["costctx.schema"] == "1"
    assert "costctx.missing" not in root.attributes
    assert child.attributes["costctx.missing"] == ["workflow.id", "request.id", "owner.tenant", "owner.feature"]
    for key, value in ENVELOPE.items():
        assert root.attributes[key] == value


def test_required_fields_are_configurable(make_sidecar, sink):
    runner = make_sidecar(
        processors=["envelope"], processor_config={"envelope": {"required_fields": ["workflow.id", "owner.team"]}}
    )
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port)
    _send_workload(provider)
    assert sink.wait_for_spans(2)
    spans = {s.name: s for s in sink.spans()}
    assert spans["root"].attributes["costctx.missing"] == ["owner.team"]
    assert spans["child"].attributes["costctx.missing"] == ["workflow.id", "owner.team"]


def test_empty_string_counts_as_missing(make_sidecar, sink):
    runner = make_sidecar(processors=["envelope"])
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("s", attributes={**ENVELOPE, "owner.tenant": ""}):
        pass
    provider.shutdown()
    assert sink.wait_for_spans(1)
    assert sink.spans()[0].attributes["costctx.missing"] == ["owner.tenant"]

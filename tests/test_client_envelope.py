"""The application side of the envelope in band: baggage, the stamping span processor, the
propagator that keeps baggage off outside calls, and the budget client reading the baggage.

Real OpenTelemetry SDK throughout; the budget check goes to a real sidecar over gRPC."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from costctx.client import (
    ENVELOPE_KEYS,
    EnvelopeSpanProcessor,
    InternalBaggagePropagator,
    envelope_from_baggage,
    open_envelope,
    outside_organisation,
)
from costctx.client.budget import BudgetClient, _request
from costctx.envelope import ENVELOPE
from tests.support.budget import budget_config
from tests.support.sidecar import start_sidecar

ENV = {"workflow_id": "wf-1", "request_id": "req-1", "tenant": "acme", "feature": "chat", "workflow_name": "triage"}
CANONICAL = {"workflow.id": "wf-1", "request.id": "req-1", "owner.tenant": "acme", "owner.feature": "chat",
             "workflow.name": "triage"}


@pytest.fixture
def sdk():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc-a"}))
    provider.add_span_processor(EnvelopeSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _by_name(exporter) -> dict:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_client_keys_are_the_contracts_context_keys():
    assert ENVELOPE.context_keys == ENVELOPE_KEYS


def test_client_imports_without_the_sidecar():
    # A fresh interpreter: importing the client must not pull in the sidecar's servers,
    # config, YAML or the pipeline.
    code = ("import sys, costctx.client, costctx.client.budget; "
            "bad = [m for m in sys.modules if m.startswith(('costctx.service', 'costctx.processors', "
            "'costctx.receivers', 'yaml', 'aiohttp', 'pydantic'))]; print(bad); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="sidecar")


def test_retry_attempt_is_on_the_root_only(sdk):
    tracer, exporter = sdk
    with open_envelope(tracer, "ingress", **ENV, retry_attempt=1):
        assert "retry.attempt" not in baggage.get_all()
        with tracer.start_as_current_span("child"):
            pass
    spans = _by_name(exporter)
    assert spans["ingress"].attributes["retry.attempt"] == 1
    assert "retry.attempt" not in spans["child"].attributes


def test_open_envelope_sets_baggage_and_root_attributes_and_stamps_children(sdk):
    tracer, exporter = sdk
    with open_envelope(tracer, "ingress", **ENV) as root:
        assert envelope_from_baggage() == CANONICAL
        assert root.is_recording()
        with tracer.start_as_current_span("tool"), tracer.start_as_current_span("chat gpt-4o"):
            pass
    assert envelope_from_baggage() == {}  # detached on exit
    spans = _by_name(exporter)
    for name in ("ingress", "tool", "chat gpt-4o"):
        assert {k: spans[name].attributes.get(k) for k in CANONICAL} == CANONICAL, name


def test_only_envelope_keys_are_stamped_and_a_spans_own_value_is_kept(sdk):
    tracer, exporter = sdk
    ctx = baggage.set_baggage("owner.tenant", "acme")
    ctx = baggage.set_baggage("session.secret", "s3cr3t", ctx)
    ctx = baggage.set_baggage("retry.attempt", "2", ctx)
    token = context.attach(ctx)
    try:
        with tracer.start_as_current_span("own", attributes={"owner.tenant": "globex"}):
            pass
        with tracer.start_as_current_span("plain"):
            pass
    finally:
        context.detach(token)
    spans = _by_name(exporter)
    assert spans["own"].attributes["owner.tenant"] == "globex"
    assert spans["plain"].attributes["owner.tenant"] == "acme"
    assert "retry.attempt" not in spans["plain"].attributes  # never inherited
    assert "session.secret" not in spans["plain"].attributes


def test_unknown_envelope_field_is_refused(sdk):
    tracer, _ = sdk
    with pytest.raises(ValueError, match="tennant"), open_envelope(tracer, "x", tennant="acme"):
        pass


def _propagator():
    return CompositePropagator([TraceContextTextMapPropagator(), InternalBaggagePropagator()])


def test_baggage_crosses_a_process_boundary_and_stays_off_outside_calls(sdk):
    tracer, exporter = sdk
    propagator = _propagator()
    inside: dict[str, str] = {}
    outside: dict[str, str] = {}
    with open_envelope(tracer, "ingress", **ENV):
        propagator.inject(inside)
        with outside_organisation(), tracer.start_as_current_span("chat provider"):
            propagator.inject(outside)
    assert "baggage" in inside and "traceparent" in inside
    assert "traceparent" in outside and "baggage" not in outside
    # The span made inside outside_organisation() still carries the envelope.
    assert _by_name(exporter)["chat provider"].attributes["workflow.id"] == "wf-1"
    # Service B: the standard propagators extract; the span processor stamps.
    token = context.attach(propagator.extract(inside))
    try:
        with tracer.start_as_current_span("service-b handler"):
            pass
    finally:
        context.detach(token)
    b_span = _by_name(exporter)["service-b handler"]
    assert {k: b_span.attributes.get(k) for k in CANONICAL} == CANONICAL
    assert b_span.context.trace_id == _by_name(exporter)["ingress"].context.trace_id
    # Plain W3CBaggagePropagator, for contrast: it would have sent it.
    leaked: dict[str, str] = {}
    with open_envelope(tracer, "ingress2", **ENV), outside_organisation():
        W3CBaggagePropagator().inject(leaked)
    assert "baggage" in leaked


def test_budget_request_carries_baggage_envelope_and_current_ids(sdk):
    tracer, _ = sdk
    with open_envelope(tracer, "ingress", **ENV), tracer.start_as_current_span("step") as step:
        request = _request("gpt-4o", 0.1, 0, 0, False, None, {"feature": "summarize"})
        ids = step.get_span_context()
    assert request.envelope.workflow_id == "wf-1"
    assert request.envelope.owner.tenant == "acme"
    assert request.envelope.owner.feature == "summarize"  # given here: wins over baggage
    assert request.trace_id == ids.trace_id.to_bytes(16, "big")
    assert request.span_id == ids.span_id.to_bytes(8, "big")
    outside = _request("gpt-4o", 0.1, 0, 0, False, None, {})
    assert outside.trace_id == b"" and outside.envelope.workflow_id == ""
    assert trace.get_current_span().get_span_context().is_valid is False


def test_budget_check_at_a_real_sidecar_takes_its_envelope_from_baggage(sdk, sink):
    tracer, _ = sdk
    policy = {"id": "triage-policy", "workflow_names": ["triage"], "workflow": {"cost_usd": 1.0}}
    runner = start_sidecar(budget_config(sink.grpc_port, "memory", None, [policy]))
    try:
        with BudgetClient(f"127.0.0.1:{runner.sidecar.grpc_port}") as client:
            workflow = f"wf-{uuid.uuid4().hex[:8]}"
            with open_envelope(tracer, "ingress", **{**ENV, "workflow_id": workflow}):
                first = client.check(model="gpt-4o", estimated_cost_usd=0.6)
                second = client.check(model="gpt-4o", estimated_cost_usd=0.6)
            unmatched = client.check(model="gpt-4o", estimated_cost_usd=0.6)
    finally:
        runner.stop()
    # workflow.name from baggage matched the policy; the reservation of the first counts
    # against the same workflow.id (from baggage) in the second.
    assert first.response.policy_id == "triage-policy" and first.decision == "ALLOW"
    assert second.decision == "BLOCK"
    assert unmatched.response.policy_id == ""

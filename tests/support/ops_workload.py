"""A known multi-hop workload for the operations tests (status page, Prometheus, dashboard).

Sent with the real OpenTelemetry SDK through the default pipeline. Three hops:
  gateway (depth 0): the root with the whole envelope, and one model call with it;
  worker  (depth 1): a model call that carries only the ids: owner.* is inherited from the root;
  billing (depth 2): a model call in a second workflow with no tenant anywhere (stays missing).
Each model call carries a provider-reported cost, so the spend per tenant is exactly known.
"""

from __future__ import annotations

from opentelemetry import trace

from tests.support.sdk import tracer_provider

ROOT_ATTRS = {
    "workflow.id": "wf-1",
    "workflow.name": "answer",
    "request.id": "req-1",
    "owner.tenant": "acme",
    "owner.feature": "chat",
    "owner.team": "search",
    "owner.user": "u-1",
    "policy.id": "pol-1",
}
MODEL = {
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
}
HOPS = ("gateway", "worker", "billing")
# Provider-reported costs: gateway 0.25 + worker 0.5 for acme; billing 0.125 with no tenant.
SPEND_BY_TENANT = {"acme": 0.75, "unknown": 0.125}
SPENT_USD = sum(SPEND_BY_TENANT.values())


def send_ops_workload(grpc_port: int) -> None:
    providers = {hop: tracer_provider(grpc_port=grpc_port, service=hop) for hop in HOPS}
    gateway, worker, billing = (providers[h].get_tracer("ops") for h in HOPS)
    with gateway.start_as_current_span("POST /answer", attributes={**ROOT_ATTRS, "workflow.hop_depth": 0}) as root:
        with gateway.start_as_current_span(
            "chat gateway", attributes={**ROOT_ATTRS, **MODEL, "gen_ai.usage.cost": 0.25, "workflow.hop_depth": 0}
        ):
            pass
        with worker.start_as_current_span(
            "chat worker",
            context=trace.set_span_in_context(root),
            attributes={"workflow.id": "wf-1", "request.id": "req-1", **MODEL, "gen_ai.usage.cost": 0.5,
                        "workflow.hop_depth": 1},
        ):
            pass
    # A second trace: a batch job with ids but no owner at all.
    with billing.start_as_current_span(
        "chat billing",
        attributes={"workflow.id": "wf-2", "workflow.name": "invoice", "request.id": "req-2", **MODEL,
                    "gen_ai.usage.cost": 0.125, "workflow.hop_depth": 2},
    ):
        pass
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()

"""`costctx demo`, budget section: an agent loop that asks the sidecar before each model call.

Its context grows every step, so each call costs more. At the soft threshold the sidecar
answers DEGRADE and the loop switches to the cheaper model; at the hard one it answers
BLOCK and the loop stops cleanly. The calls' spans carry no cost: the `price` processor
prices them and the `budget` processor replaces each reservation with that actual cost.
"""

from __future__ import annotations

import uuid
from typing import TextIO

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from costctx.client.budget import BudgetClient

POLICY = {
    "id": "agent-loop",
    "workflow": {"cost_usd": 0.25, "steps": 20},
    "retry_max": 2,
    "downgrade": {"claude-sonnet-4-5": "claude-haiku-4-5"},
}
MAX_STEPS = 15


def demo_section(runner, sink, out: TextIO) -> None:
    sidecar = runner.sidecar
    target = f"127.0.0.1:{sidecar.grpc_port}"
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-loop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=target, insecure=True)))
    tracer = provider.get_tracer("costctx.demo.budget")
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    envelope = {"workflow_id": workflow, "workflow_name": "deep-research", "tenant": "acme",
                "feature": "research", "policy_id": POLICY["id"]}
    print(f"\nbudget: agent loop {workflow}, policy {POLICY['id']} (${POLICY['workflow']['cost_usd']:.2f} per "
          "workflow, soft 80% -> claude-haiku-4-5, hard 100% -> stop)", file=out)
    with BudgetClient(target) as budget:
        for step in range(1, MAX_STEPS + 1):
            input_tokens, output_tokens = 4000 * step, 600  # the context grows every step
            decision = budget.check(model="claude-sonnet-4-5", input_tokens=input_tokens,
                                    output_tokens=output_tokens, **envelope)
            r = decision.response
            model = decision.model if decision.allowed else "-"
            line = (f"  step {step:2} {decision.decision:7} {model:18} reserve ${r.reserved_cost_usd:.4f}"
                    f"  spent ${r.spent_usd:.4f} of ${r.limit_usd:.2f}  state={decision.state}")
            print(line, file=out)
            if decision.blocked:
                print(f"  stopped cleanly before step {step}: {decision.reason}", file=out)
                break
            before = sink.span_count()
            with tracer.start_as_current_span(f"chat {decision.model}", kind=trace.SpanKind.CLIENT) as span:
                span.set_attributes({
                    "workflow.id": workflow, "workflow.name": "deep-research", "owner.tenant": "acme",
                    "owner.feature": "research", "request.id": request_id, "owner.user": "u-829",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "anthropic", "gen_ai.request.model": decision.model,
                    "gen_ai.response.model": decision.model, "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens, **decision.span_attributes(),
                })
            # The loop waits for its call; the sidecar commits the priced span before forwarding it.
            sink.wait_for_spans(before + 1, timeout=10)
        final = budget.check(dry_run=True, **envelope).response
    provider.shutdown()
    spans = [s for s in sink.spans() if s.attributes.get("workflow.id") == workflow]
    total = sum(s.attributes.get("cost.usd", 0.0) for s in spans)
    ordered = sorted(spans, key=lambda s: s.start_time_unix_nano)
    states = ", ".join(str(s.attributes.get("budget.state")) for s in ordered)
    print(f"  {len(spans)} model calls, ${total:.4f} priced on the spans; the budget counter says "
          f"${final.usages[0].spent:.4f} spent, ${final.usages[0].reserved:.4f} reserved", file=out)
    print(f"  budget.state on the spans: {states}", file=out)

# ruff: noqa: SIM117 - nested `with` blocks mirror the span trees under test
"""Settlement: spend whose context arrives after its span has left (a real sidecar, the real
SDK, a real sink): the spend view, the outcomes, the budget counters, the attribution record."""

from __future__ import annotations

import uuid
from decimal import Decimal

from opentelemetry import trace

from costctx.attribution.pending import PendingLedger, PendingSpan
from costctx.client.budget import BudgetClient
from costctx.survival.report import survival_report
from tests.support.attribution import attribution_records
from tests.support.metrics import metric
from tests.support.sdk import tracer_provider
from tests.support.two_services import MODEL_ATTRS
from tests.support.wait import wait_until

CALLS = 4


def _envelope() -> dict[str, str]:
    return {"workflow.id": f"wf-{uuid.uuid4().hex[:8]}", "workflow.name": "research", "request.id": "req-1",
            "owner.tenant": "acme", "owner.feature": "research"}


def _pico(usd: float) -> int:
    return int((Decimal(repr(usd)) * 10**12).to_integral_value())


def test_a_workflow_whose_root_ends_last_is_settled_when_the_root_arrives(make_sidecar, sink):
    policy = {"id": "research", "workflow_names": ["research"], "workflow": {"cost_usd": 100.0}}
    runner = make_sidecar(processor_config={"inherit": {"wait_duration": "200ms"}, "budget": {"policies": [policy]}})
    port = runner.sidecar.grpc_port
    provider = tracer_provider(grpc_port=port, service="agent", schedule_delay_millis=20)
    tracer = provider.get_tracer("agent")
    envelope = _envelope()
    root = tracer.start_span("root", attributes=envelope)
    with trace.use_span(root, end_on_exit=False):
        for _ in range(CALLS):
            with tracer.start_as_current_span("chat gpt-4o", attributes=MODEL_ATTRS):
                pass
    provider.force_flush()
    # The model calls leave unattributed once their wait runs out (the root is still running).
    assert sink.wait_for_spans(CALLS)
    model_spans = sink.spans()
    assert all("workflow.id" not in s.attributes for s in model_spans)
    assert wait_until(lambda: metric(runner, "costctx_settle_pending_spans") == CALLS)
    report = runner.call(lambda: survival_report(runner.sidecar.survival.snapshot_all()))
    assert report["spend"]["unknown_tenant_usd"] > 0 and report["spend"]["pending_share"] == 1.0

    root.end()
    provider.force_flush()
    assert wait_until(lambda: len(attribution_records(sink)) == CALLS)
    records = {(r["trace_id"], r["span_id"]): r for r in attribution_records(sink)}
    costs = {}
    for span in model_spans:
        record = records[(span.trace_id, span.span_id)]
        attrs = record["attributes"]
        assert attrs["workflow.id"] == envelope["workflow.id"] and attrs["owner.tenant"] == "acme"
        assert attrs["costctx.settled_by"] == "ancestor"
        assert attrs["cost.usd"] == span.attributes["cost.usd"]
        assert attrs["cost.price_source"] == span.attributes["cost.price_source"]
        assert isinstance(attrs["costctx.settle_delay_ms"], int)
        assert record["resource"]["service.name"] == "agent"
        costs[span.span_id] = span.attributes["cost.usd"]

    sink_total = sum(_pico(s.attributes["cost.usd"]) for s in sink.spans() if "cost.usd" in s.attributes)
    snapshot = runner.call(runner.sidecar.survival.snapshot_all)
    spend = survival_report(snapshot)["spend"]
    assert spend["unknown_tenant_usd"] == 0 and spend["pending_usd"] == 0
    assert sum(row.total for row in snapshot.spend.values()) == sink_total  # exact, in pico-USD
    assert sum(row.settled for row in snapshot.spend.values()) == sum(_pico(c) for c in costs.values())
    assert snapshot.counts[("agent", "workflow.id", "settled")] == CALLS
    assert snapshot.counts.get(("agent", "workflow.id", "missing"), 0) == 0
    assert metric(runner, "costctx_settled_spans_total", by="ancestor") == CALLS

    # The budget counters have the settled spend on the workflow.
    with BudgetClient(f"127.0.0.1:{port}") as budget:
        decision = budget.check(model="gpt-4o", dry_run=True, workflow_id=envelope["workflow.id"],
                                workflow_name="research", tenant="acme", feature="research")
    usage = next(u for u in decision.response.usages if u.dimension == "workflow.cost_usd")
    assert abs(usage.spent - sum(costs.values())) < 1e-6
    provider.shutdown()


def _entry(i: int, now: float) -> PendingSpan:
    return PendingSpan(trace_id=i.to_bytes(16, "big"), span_id=b"\x01" * 8, parent_id=b"\x02" * 8, hop="svc",
                       resource=b"\x0a\x05svc-b" * 4, cost_pico=1000, input_tokens=10, output_tokens=5,
                       price_source="builtin@x", spend_key=(None, ("", "")), fields={"owner.feature": "chat"},
                       missing=("workflow.id", "owner.tenant"), start_ns=1, end_ns=2, added_at=now)


def test_pending_ledger_stays_bounded_under_a_flood_of_traces_that_never_settle():
    clock = [0.0]
    ledger = PendingLedger(max_entries=1000, max_bytes=200_000, window=3600, timer=lambda: clock[0])
    for i in range(50_000):
        ledger.add(_entry(i, clock[0]))
    assert len(ledger) <= 1000 and ledger.nbytes <= 200_000
    assert ledger.dropped == 50_000 - len(ledger)
    assert len(ledger.traces()) == len(ledger)
    assert ledger.pending_pico == 1000 * len(ledger)
    clock[0] = 3601.0  # past the attribution window: all expire
    assert ledger.expire() > 0 and len(ledger) == 0 and ledger.nbytes == 0 and ledger.pending_pico == 0


def test_pending_ledger_settles_a_trace_once_and_ignores_a_resend():
    ledger = PendingLedger(max_entries=10, max_bytes=100_000, window=60, timer=lambda: 0.0)
    assert ledger.add(_entry(1, 0.0))
    assert not ledger.add(_entry(1, 0.0))
    assert len(ledger.take_trace((1).to_bytes(16, "big"))) == 1
    assert ledger.take_trace((1).to_bytes(16, "big")) == [] and ledger.nbytes == 0


def test_a_check_that_registers_the_trace_later_settles_spend_that_already_left(make_sidecar, sink):
    runner = make_sidecar(processor_config={"inherit": {"wait_duration": "200ms"},
                                            "settle": {"poll_interval": "100ms"}})
    port = runner.sidecar.grpc_port
    provider = tracer_provider(grpc_port=port, service="svc-b", schedule_delay_millis=20)
    tracer = provider.get_tracer("b")
    envelope = _envelope()
    handler = tracer.start_span("handler")  # a remote parent's child: never seen by this sidecar
    with trace.use_span(handler, end_on_exit=False):
        with tracer.start_as_current_span("chat gpt-4o", attributes=MODEL_ATTRS):
            pass
    provider.force_flush()
    assert sink.wait_for_spans(1)
    assert wait_until(lambda: metric(runner, "costctx_settle_pending_spans") == 1)
    with BudgetClient(f"127.0.0.1:{port}") as budget, trace.use_span(handler, end_on_exit=False):
        budget.check(model="gpt-4o", estimated_cost_usd=0.01, workflow_id=envelope["workflow.id"],
                     request_id="req-1", tenant="acme", feature="research")
    assert wait_until(lambda: len(attribution_records(sink)) == 1)
    record = attribution_records(sink)[0]
    assert record["attributes"]["costctx.settled_by"] == "check"
    assert record["attributes"]["workflow.id"] == envelope["workflow.id"]
    assert record["span_id"] == sink.spans()[0].span_id
    provider.shutdown()

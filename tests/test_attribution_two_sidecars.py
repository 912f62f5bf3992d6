"""One workflow across two services, each with its own sidecar (`costctx run` processes)
sharing one real Redis; the real SDK in both; A calls B over HTTP on loopback."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from costctx.cli.sink import OtlpSink
from costctx.client.budget import BudgetClient
from tests.support.attribution import attribution_records
from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.sink import PatientSink
from tests.support.two_services import MODEL_ATTRS, ServiceA, ServiceB
from tests.support.wait import wait_until

# Two `costctx run` processes and a sink: the outer loop.
pytestmark = pytest.mark.e2e

WORKFLOWS = 20
CALLS = 3


def _config(sink_port: int, redis_url: str, prefix: str, policies: list[dict] | None = None) -> dict:
    config = sidecar_config(sink_port, processor_config={
        "inherit": {"wait_duration": "500ms",
                    "registry": {"backend": "redis", "redis": {"url": redis_url, "key_prefix": prefix + "reg:"}}},
        "budget": {"backend": "redis", "redis": {"url": redis_url, "key_prefix": prefix + "bud:"},
                   "policies": policies or []},
    })
    return with_fixed_ports(config)


@pytest.fixture
def sidecars(tmp_path, redis_url) -> Iterator:
    started: list[SidecarProcess] = []
    sink = PatientSink()
    sink.start()

    def make(policies: list[dict] | None = None) -> tuple[SidecarProcess, SidecarProcess, OtlpSink]:
        prefix = f"{{t{uuid.uuid4().hex[:8]}}}:"
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            started.append(SidecarProcess(_config(sink.grpc_port, redis_url, prefix, policies),
                                          tmp_path / name).start())
        return started[0], started[1], sink

    yield make
    for process in started:
        process.close()
    sink.stop()


def _envelope(i: int) -> dict[str, str]:
    return {"workflow.id": f"wf-{uuid.uuid4().hex[:8]}", "request.id": f"req-{i}",
            "owner.tenant": ("acme", "globex")[i % 2], "owner.feature": "research"}


def _b_model_spans(sink) -> list:
    return [s for s in sink.spans() if s.service == "svc-b" and s.name == "chat gpt-4o"]


def test_envelope_in_baggage_reaches_b_spans_with_the_right_values_and_no_hold(sidecars):
    side_a, side_b, sink = sidecars()
    b = ServiceB(side_b.grpc_target, baggage=True, calls=CALLS)
    a = ServiceA(side_a.grpc_target, baggage=True)
    try:
        for i in range(WORKFLOWS):
            a.run(b.url, _envelope(i))
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: len(_b_model_spans(sink)) >= WORKFLOWS * CALLS, timeout=60)
    spans = _b_model_spans(sink)
    correct = sum(1 for s in spans
                  if s.attributes.get("workflow.id") == a.traces[s.trace_id]["workflow.id"]
                  and s.attributes.get("owner.tenant") == a.traces[s.trace_id]["owner.tenant"])
    assert correct / len(spans) >= 0.99, f"{correct} of {len(spans)} correct"
    assert side_b.metric("costctx_inherit_held_spans_total") == 0


def test_traceparent_only_b_learns_the_workflow_from_the_registry_a_check_wrote(sidecars):
    side_a, side_b, sink = sidecars()
    b = ServiceB(side_b.grpc_target, baggage=False, calls=CALLS)
    a = ServiceA(side_a.grpc_target, baggage=False, budget_target=side_a.grpc_target)
    try:
        for i in range(5):
            a.run(b.url, _envelope(i))
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: len(_b_model_spans(sink)) >= 5 * CALLS, timeout=60)
    for span in _b_model_spans(sink):
        expected = a.traces[span.trace_id]
        assert span.attributes.get("workflow.id") == expected["workflow.id"]
        assert span.attributes.get("owner.tenant") == expected["owner.tenant"]
    assert side_b.metric("costctx_registry_lookups_total", {"result": "remote"}) >= 1
    assert side_b.metric("costctx_inherit_missing_spans_total") == 0


def _survival(side: SidecarProcess) -> dict:
    with urllib.request.urlopen(side.admin_url + "/survival", timeout=5) as response:
        return json.loads(response.read())


def _pico(usd: float) -> int:
    return int((Decimal(repr(usd)) * 10**12).to_integral_value())


def test_traceparent_only_b_spend_is_settled_after_a_root_that_ends_last(sidecars):
    side_a, side_b, sink = sidecars()
    b = ServiceB(side_b.grpc_target, baggage=False, calls=CALLS)
    a = ServiceA(side_a.grpc_target, baggage=False)
    runs = 4
    try:
        for i in range(runs):
            # The root ends after B's spans have waited their 500 ms and left unattributed.
            a.run(b.url, _envelope(i), model_calls=1, root_only=True, root_ends_after=0.8)
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: len(_b_model_spans(sink)) >= runs * CALLS, timeout=60)
    b_spans = _b_model_spans(sink)
    assert all("workflow.id" not in s.attributes for s in b_spans)  # left without it: no hold gained it
    # Settled once A's root arrived (poll interval 1 s by default; the deadline is for a loaded machine).
    assert wait_until(lambda: len([r for r in attribution_records(sink) if r["resource"]["service.name"] == "svc-b"])
                      >= runs * CALLS, timeout=60)
    records = {(r["trace_id"], r["span_id"]): r for r in attribution_records(sink)}
    for span in b_spans:
        attrs = records[(span.trace_id, span.span_id)]["attributes"]
        expected = a.traces[span.trace_id]
        assert attrs["workflow.id"] == expected["workflow.id"]
        assert attrs["owner.tenant"] == expected["owner.tenant"]
        assert attrs["costctx.settled_by"] == "registry"
        assert attrs["cost.usd"] == span.attributes["cost.usd"]
    assert side_b.metric("costctx_settled_spans_total", {"by": "registry"}) == runs * CALLS
    # Summed over both sidecars the spend views equal the cost.usd at the sink, exactly; no unknown left.
    sink_total = sum(_pico(s.attributes["cost.usd"]) for s in sink.spans() if "cost.usd" in s.attributes)
    views = [_survival(side)["spend"] for side in (side_a, side_b)]
    assert sum(_pico(v["total_usd"]) for v in views) == sink_total
    assert all(v["unknown_tenant_usd"] == 0 and v["pending_usd"] == 0 for v in views)
    tenants = {row["tenant"] for v in views for row in v["by_workflow_tenant"]}
    assert tenants == {"acme", "globex"}


def test_a_check_at_b_sees_both_services_spend_and_blocks_past_the_limit(sidecars):
    limit = 0.028  # one model call costs $0.0045 (1000 in + 200 out on gpt-4o)
    policy = {"id": "research", "workflow_names": ["research"], "workflow": {"cost_usd": limit}}
    side_a, side_b, sink = sidecars([policy])
    b = ServiceB(side_b.grpc_target, baggage=True, calls=3, budget_target=side_b.grpc_target)
    a = ServiceA(side_a.grpc_target, baggage=True)
    envelope = {**_envelope(0), "workflow.name": "research"}
    try:
        a.run(b.url, envelope, model_calls=3)
    finally:
        a.close()
        b.close()
    assert b.decisions == ["ALLOW"] * 3
    assert wait_until(lambda: len([s for s in sink.spans() if s.name == "chat gpt-4o"]) >= 6, timeout=60)
    spent = sum(s.attributes["cost.usd"] for s in sink.spans() if s.name == "chat gpt-4o")
    with BudgetClient(side_b.grpc_target) as budget:
        decision = budget.check(model="gpt-4o", estimated_cost_usd=0.0045, workflow_id=envelope["workflow.id"],
                                workflow_name="research", tenant=envelope["owner.tenant"], feature="research")
    usage = next(u for u in decision.response.usages if u.dimension == "workflow.cost_usd")
    assert abs(usage.spent - spent) < 1e-6  # A's three calls and B's three
    assert decision.decision == "BLOCK"


def test_a_span_seen_by_both_sidecars_is_committed_once_and_totals_come_from_the_shared_counter(sidecars):
    side_a, side_b, sink = sidecars([{"id": "research", "workflow_names": ["research"],
                                      "workflow": {"cost_usd": 100.0}}])
    envelope = {**_envelope(1), "workflow.name": "research"}
    trace_id = bytes.fromhex(uuid.uuid4().hex)
    first = traces_request(1, service="svc-a", attributes={**envelope, **MODEL_ATTRS}, trace_id=trace_id)
    other = traces_request(1, service="svc-b", attributes={**envelope, **MODEL_ATTRS}, trace_id=trace_id)
    payload = first.SerializeToString()
    # The same span through both sidecars: a resend to another pod after the first one's commit
    # reached the shared store (the Redis commit runs after the export is answered; sent at once,
    # either sidecar may be first and the other one counts the duplicate).
    _, error = grpc_call(int(side_a.grpc_target.rsplit(":", 1)[1]), TRACE_METHOD, payload)
    assert error is None
    assert wait_until(lambda: side_a.metric("costctx_budget_committed_spans_total") == 1, timeout=30)
    _, error = grpc_call(int(side_b.grpc_target.rsplit(":", 1)[1]), TRACE_METHOD, payload)
    assert error is None
    _, error = grpc_call(int(side_b.grpc_target.rsplit(":", 1)[1]), TRACE_METHOD, other.SerializeToString())
    assert error is None
    assert wait_until(lambda: len(sink.spans()) >= 3, timeout=60)
    cost = sink.spans()[0].attributes["cost.usd"]
    with BudgetClient(side_a.grpc_target) as budget:
        decision = budget.check(model="gpt-4o", dry_run=True, workflow_id=envelope["workflow.id"],
                                workflow_name="research", tenant=envelope["owner.tenant"], feature="research")
    spent = {u.dimension: u.spent for u in decision.response.usages}
    # Committed: the first span once (its copy at B is a duplicate), B's own span once.
    assert spent["workflow.cost_usd"] == pytest.approx(2 * cost, abs=1e-6)
    # workflow.spend_total_usd from the shared counter: B's own span shows both services' spend.
    b_own = next(s for s in sink.spans() if s.service == "svc-b")
    assert b_own.attributes["workflow.spend_total_usd"] == pytest.approx(2 * cost, abs=1e-6)
    assert side_b.metric("costctx_budget_duplicate_spans_total") == 1
    assert side_a.metric("costctx_budget_duplicate_spans_total") == 0

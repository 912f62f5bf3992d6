"""Runtime budgets end to end: a real sidecar, the real gRPC client, spans through the real SDK.

Every behaviour runs on both stores: in-memory and a real redis-server.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from costctx.client.budget import BudgetClient
from tests.support.budget import budget_config, committed_call, model_call, store_param
from tests.support.sdk import tracer_provider
from tests.support.sidecar import start_sidecar
from tests.support.wait import wait_until
from tests.support.wall_clock import clear_of_window_starts


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> tuple[str, str | None]:
    return store_param(request)


class BudgetRig:
    def __init__(self, runner, sink) -> None:
        self.runner = runner
        self.sink = sink
        sidecar = runner.sidecar
        self.client = BudgetClient(f"127.0.0.1:{sidecar.grpc_port}")
        self.provider = tracer_provider(grpc_port=sidecar.grpc_port, schedule_delay_millis=20)
        self.tracer = self.provider.get_tracer("budget-test")

    def call(self, *, estimate: float, actual: float, **fields):
        return committed_call(self.client, self.tracer, self.provider, self.sink, estimate=estimate, actual=actual,
                              **fields)

    def metric(self, name: str, labels: dict | None = None) -> float:
        # The budget metrics are labelled by the processor's id: this rig runs one, `budget`.
        labels = {"processor": "budget", **(labels or {})}
        value = self.runner.sidecar.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def close(self) -> None:
        self.provider.shutdown()
        self.client.close()
        self.runner.stop()


@pytest.fixture
def make_rig(sink, backend) -> Iterator:
    rigs: list[BudgetRig] = []

    def make(policies: list[dict], **extra) -> BudgetRig:
        rig = BudgetRig(start_sidecar(budget_config(sink.grpc_port, *backend, policies, **extra)), sink)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def wf() -> str:
    return f"wf-{uuid.uuid4().hex[:8]}"


DOWNGRADE = {"gpt-4o": "gpt-4o-mini"}


def test_soft_then_hard_transitions_and_span_states(make_rig, sink):
    rig = make_rig([{"id": "agent", "workflow": {"cost_usd": 1.0}, "downgrade": DOWNGRADE}])
    workflow = wf()
    seen = []
    for _ in range(12):
        d = rig.call(estimate=0.10, actual=0.10, workflow_id=workflow, policy_id="agent")
        seen.append((d.decision, d.model, d.state))
    # 0.1 .. 0.7 projected: under the 80% soft threshold; 0.8 .. 1.0: degrade to the cheaper
    # model; then nothing fits under the hard limit.
    assert seen[:7] == [("ALLOW", "gpt-4o", "ok")] * 7
    assert seen[7:10] == [("DEGRADE", "gpt-4o-mini", "soft")] * 3
    assert seen[10:] == [("BLOCK", "gpt-4o", "hard")] * 2
    blocked = rig.client.check(model="gpt-4o", estimated_cost_usd=0.10, workflow_id=workflow, policy_id="agent")
    assert blocked.response.dimension == "workflow.cost_usd"
    assert blocked.response.spent_usd == pytest.approx(1.0)
    assert blocked.response.limit_usd == pytest.approx(1.0)
    assert blocked.response.remaining_usd == pytest.approx(0.0)
    assert not blocked.reservation_id
    # Every priced span carries the policy context at its commit.
    states = [s.attributes.get("budget.state") for s in sorted(sink.spans(), key=lambda s: s.start_time_unix_nano)]
    assert states == ["ok"] * 7 + ["soft"] * 2 + ["hard"]
    assert {s.attributes.get("policy.id") for s in sink.spans()} == {"agent"}
    assert rig.metric("costctx_budget_decisions_total", {"policy": "agent", "decision": "block"}) == 3
    assert rig.metric("costctx_budget_reservations_total", {"outcome": "committed"}) == 10


def test_policy_matched_by_workflow_name_is_stamped(make_rig, sink):
    rig = make_rig([{"id": "triage-v2", "workflow_names": ["triage"], "workflow": {"cost_usd": 5.0}}])
    d = rig.call(estimate=0.2, actual=0.2, workflow_id=wf(), workflow_name="triage")
    assert d.decision == "ALLOW" and d.response.policy_id == "triage-v2"
    (span,) = sink.spans()
    assert span.attributes["policy.id"] == "triage-v2"
    assert span.attributes["budget.state"] == "ok"
    # No policy for this envelope: allowed, nothing reserved, nothing stamped.
    free = rig.client.check(model="gpt-4o", estimated_cost_usd=9.0, workflow_id=wf(), workflow_name="other")
    assert free.decision == "ALLOW" and free.response.policy_id == "" and not free.reservation_id


def test_retry_ceiling(make_rig):
    rig = make_rig([{"id": "p", "retry_max": 2, "workflow": {"cost_usd": 10.0}}])
    workflow = wf()
    assert rig.client.check(workflow_id=workflow, policy_id="p", retry_attempt=2, estimated_cost_usd=0.01).allowed
    third_retry = rig.client.check(workflow_id=workflow, policy_id="p", retry_attempt=3, estimated_cost_usd=0.01)
    assert third_retry.decision == "BLOCK" and third_retry.state == "hard"
    assert third_retry.response.dimension == "workflow.retry_attempt"
    assert "retry ceiling" in third_retry.reason


def test_step_ceiling_counts_reservations_and_spans(make_rig):
    rig = make_rig([{"id": "p", "workflow": {"steps": 3}}])
    workflow = wf()
    assert rig.call(estimate=0, actual=0.01, workflow_id=workflow, policy_id="p").allowed
    # Two checks in flight (reserved, no span yet) use up the rest of the steps.
    held = [rig.client.check(workflow_id=workflow, policy_id="p") for _ in range(2)]
    assert all(d.allowed for d in held)
    fourth = rig.client.check(workflow_id=workflow, policy_id="p")
    assert fourth.decision == "BLOCK" and fourth.response.dimension == "workflow.steps"
    assert fourth.response.spent_usd == 1 and fourth.response.limit_usd == 3  # in the unit `steps`
    # A call that was not made gives its step back.
    assert rig.client.release(held[0].reservation_id)
    assert not rig.client.release(held[0].reservation_id)
    assert rig.client.check(workflow_id=workflow, policy_id="p").allowed


def test_tokens_and_wall_clock_dimensions(make_rig):
    import time

    rig = make_rig([{"id": "p", "workflow": {"tokens": 1000, "wall_clock": "400ms"}}])
    workflow = wf()
    d = rig.client.check(workflow_id=workflow, policy_id="p", input_tokens=600, output_tokens=300)
    assert d.decision == "ALLOW" and d.state == "soft"  # 900 of 1000 tokens, no cheaper model configured
    over = rig.client.check(workflow_id=workflow, policy_id="p", input_tokens=100, output_tokens=50)
    assert over.decision == "BLOCK" and over.response.dimension == "workflow.tokens"
    other = wf()
    assert rig.client.check(workflow_id=other, policy_id="p").allowed  # starts its clock
    time.sleep(0.6)
    late = rig.client.check(workflow_id=other, policy_id="p")
    assert late.decision == "BLOCK" and late.response.dimension == "workflow.wall_clock_s"


def test_expired_reservations_are_released(make_rig):
    """On both stores through a real sidecar; waits for the event, not a fixed sleep (the
    exact boundary is tested with an injected clock in test_budget_kernel.py)."""
    ttl = 1.0
    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 1.0}}], reservation_ttl=f"{ttl}s")
    workflow = wf()
    started = time.monotonic()
    first = rig.client.check(workflow_id=workflow, policy_id="p", estimated_cost_usd=0.6)
    assert first.allowed and first.reservation_id
    second = rig.client.check(workflow_id=workflow, policy_id="p", estimated_cost_usd=0.6)
    if time.monotonic() - started < ttl:  # a stall past the TTL on a loaded machine proves nothing here
        assert second.decision == "BLOCK"
    # The first call never reported: its hold lapses and the next check is admitted on 0 spend.
    again = []
    assert wait_until(lambda: again.append(rig.client.check(workflow_id=workflow, policy_id="p",
                                                            estimated_cost_usd=0.6)) or again[-1].allowed)
    assert again[-1].response.usages[0].reserved == 0 and again[-1].response.usages[0].spent == 0
    expired = {"outcome": "expired"}
    assert wait_until(lambda: rig.metric("costctx_budget_reservations_total", expired) == 1)


def test_tenant_and_feature_window_ceilings(make_rig):
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 0.5}, "feature": {"month_usd": 0.8}}])
    # The spend below must land in the windows the later checks read: not across a UTC midnight.
    clear_of_window_starts(ahead=60)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    feature = f"f-{uuid.uuid4().hex[:6]}"
    # Different workflows, one tenant: the tenant's day ceiling binds across them.
    decisions = [rig.call(estimate=0.2, actual=0.2, workflow_id=wf(), tenant=tenant, feature=feature,
                          policy_id="p").decision for _ in range(3)]
    assert decisions == ["ALLOW", "ALLOW", "BLOCK"]
    blocked = rig.client.check(workflow_id=wf(), tenant=tenant, feature=feature, policy_id="p",
                               estimated_cost_usd=0.2)
    assert blocked.response.dimension == "tenant.day_usd"
    # Another tenant on the same feature: the feature's month ceiling (0.8) is what is left.
    other = rig.call(estimate=0.3, actual=0.3, workflow_id=wf(), tenant="other", feature=feature, policy_id="p")
    assert other.allowed
    last = rig.client.check(workflow_id=wf(), tenant="third", feature=feature, policy_id="p",
                            estimated_cost_usd=0.2)
    assert last.decision == "BLOCK" and last.response.dimension == "feature.month_usd"



def test_named_tenant_gets_its_own_ceiling(make_rig):
    big = f"big-{uuid.uuid4().hex[:6]}"
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 0.5}, "tenants": {big: {"day_usd": 2.0}}}])
    small = f"small-{uuid.uuid4().hex[:6]}"
    assert rig.client.check(workflow_id=wf(), tenant=small, policy_id="p", estimated_cost_usd=0.6).decision == "BLOCK"
    d = rig.client.check(workflow_id=wf(), tenant=big, policy_id="p", estimated_cost_usd=0.6)
    assert d.decision == "ALLOW" and d.response.limit_usd == 2.0 and d.response.dimension == "tenant.day_usd"


def test_breaker_trips_on_a_workflow_far_over_its_median(make_rig, sink):
    rig = make_rig([{"id": "p", "workflow_names": ["triage"], "workflow": {"cost_usd": 100.0}}],
                   breaker={"workflow_median_multiple": 3, "min_samples": 4, "cooldown": "60s"})
    for _ in range(4):
        rig.call(estimate=0.1, actual=0.1, workflow_id=wf(), workflow_name="triage")
    runaway = wf()
    for _ in range(3):  # 0.3: not over 3 x the median of 0.1
        assert rig.call(estimate=0.1, actual=0.1, workflow_id=runaway, workflow_name="triage").allowed
    assert rig.metric("costctx_budget_breaker_trips_total", {"kind": "workflow_median"}) == 0
    rig.call(estimate=0.1, actual=0.1, workflow_id=runaway, workflow_name="triage")  # 0.4 > 0.3: trips
    assert rig.metric("costctx_budget_breaker_trips_total", {"kind": "workflow_median"}) == 1
    tripped = rig.client.check(workflow_id=runaway, workflow_name="triage", estimated_cost_usd=0.01)
    assert tripped.decision == "BLOCK" and tripped.state == "tripped"
    last_span = max(sink.spans(), key=lambda s: s.start_time_unix_nano)
    assert last_span.attributes["budget.state"] == "tripped"
    # Only that workflow: its siblings go on.
    assert rig.client.check(workflow_id=wf(), workflow_name="triage", estimated_cost_usd=0.01).allowed


def test_breaker_trips_on_tenant_spend_velocity(make_rig):
    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 100.0}}],
                   breaker={"tenant_usd_per_window": 0.5, "velocity_window": "60s", "cooldown": "60s",
                            "workflow_median_multiple": None})
    tenant = f"hot-{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        rig.call(estimate=0.2, actual=0.2, workflow_id=wf(), tenant=tenant, policy_id="p")
    assert rig.metric("costctx_budget_breaker_trips_total", {"kind": "tenant_velocity"}) == 1
    d = rig.client.check(workflow_id=wf(), tenant=tenant, policy_id="p", estimated_cost_usd=0.01)
    assert d.decision == "BLOCK" and d.state == "tripped"
    assert rig.client.check(workflow_id=wf(), tenant="calm", policy_id="p", estimated_cost_usd=0.01).allowed


def test_http_json_check_and_release(make_rig):
    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 1.0}, "downgrade": DOWNGRADE}])
    port = rig.runner.sidecar.http_port
    body = {"envelope": {"workflowId": wf(), "policyId": "p", "owner": {"tenant": "acme"}},
            "model": "gpt-4o", "estimatedCostUsd": 0.9}

    def post(path: str, payload: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=payload,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, answer = post("/v1/budget/check", json.dumps(body).encode())
    assert status == 200
    assert answer["decision"] == "DEGRADE" and answer["model"] == "gpt-4o-mini" and answer["state"] == "SOFT"
    assert answer["policyId"] == "p" and answer["reservationId"]
    assert answer["limitUsd"] == 1.0 and answer["spentUsd"] == 0.0
    status, released = post("/v1/budget/release", json.dumps({"reservationId": answer["reservationId"]}).encode())
    assert status == 200 and released == {"released": True}
    status, error = post("/v1/budget/check", b"{not json")
    assert status == 400 and "bad CheckRequest" in error["message"]
    status, error = post("/v1/budget/check", json.dumps({"estimatedCostUsd": -1}).encode())
    assert status == 400


def test_grpc_rejects_bad_requests(make_rig):
    import grpc

    rig = make_rig([])
    with pytest.raises(grpc.RpcError) as info:
        rig.client.check(estimated_cost_usd=float("nan"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_spans_without_model_calls_pass_untouched(make_rig, sink):
    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 1.0}}])
    with rig.tracer.start_as_current_span("http GET") as span:
        span.set_attribute("workflow.id", "wf-x")
        span.set_attribute("policy.id", "p")
    model_call(rig.tracer, None, workflow_id="wf-x", cost_usd=0.25)
    rig.provider.force_flush()
    assert sink.wait_for_spans(2)
    by_name = {s.name: s for s in sink.spans()}
    assert "budget.state" not in by_name["http GET"].attributes
    # A span reported without a check still counts: spend is never invisible to the budget.
    assert by_name["chat gpt-4o"].attributes.get("budget.state") is None  # no policy matched it
    d = rig.client.check(workflow_id="wf-x", policy_id="p", dry_run=True)
    assert d.response.usages[0].spent == pytest.approx(0.25)


def test_store_unreachable_fails_open_or_closed_per_policy(sink):
    from tests.support.process import free_port

    config = budget_config(sink.grpc_port, "redis", f"redis://127.0.0.1:{free_port()}/0", [
        {"id": "lenient", "workflow": {"cost_usd": 1.0}, "on_store_error": "open"},
        {"id": "strict", "workflow": {"cost_usd": 1.0}, "on_store_error": "closed"},
    ])
    rig = BudgetRig(start_sidecar(config), sink)
    try:
        lenient = rig.client.check(workflow_id=wf(), policy_id="lenient", estimated_cost_usd=0.1)
        strict = rig.client.check(workflow_id=wf(), policy_id="strict", estimated_cost_usd=0.1)
        assert lenient.decision == "ALLOW" and "unreachable" in lenient.reason
        assert strict.decision == "BLOCK" and "unreachable" in strict.reason
        assert rig.metric("costctx_budget_store_errors_total", {"operation": "check", "outcome": "fail_open"}) == 1
        assert rig.metric("costctx_budget_store_errors_total", {"operation": "check", "outcome": "fail_closed"}) == 1
        # Spans still go through, with their policy context, counted as not committed.
        model_call(rig.tracer, lenient, workflow_id="wf-down", cost_usd=0.1, workflow_name="")
        rig.provider.force_flush()
        assert sink.wait_for_spans(1)
        (span,) = sink.spans()
        assert span.attributes["policy.id"] == "lenient" and "budget.state" not in span.attributes
        assert rig.metric("costctx_budget_store_errors_total", {"operation": "commit", "outcome": "unstamped"}) == 1
    finally:
        rig.close()



def test_stop_releases_a_held_batch_and_cancels_its_commit_before_closing_the_store(sink):
    """A Redis that accepts connections and never answers: the batch is held for its commit.
    Stopping releases it unstamped, and close() cancels the commit task (it used to be left
    running against a closed store, past the loop's end)."""
    import asyncio
    import socket

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshake; nothing ever reads or answers
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    runner = start_sidecar(budget_config(sink.grpc_port, "redis", url, [{"id": "p", "workflow": {"cost_usd": 1.0}}],
                                         redis={"timeout": "30s"}))
    try:
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = uuid.uuid4().bytes, uuid.uuid4().bytes[:8], "chat held"
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        for key, value in {"workflow.id": wf(), "policy.id": "p", "gen_ai.request.model": "gpt-4o"}.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        with grpc.insecure_channel(f"127.0.0.1:{runner.sidecar.grpc_port}") as channel:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
        commits = runner.call(lambda: [t for t in asyncio.all_tasks() if "_commit_remote" in repr(t.get_coro())])
        assert len(commits) == 1 and not commits[0].done()
        assert sink.span_count() == 0  # held for its commit
    finally:
        runner.stop()
        silent.close()
    assert sink.wait_for_spans(1)
    (forwarded,) = sink.spans()
    assert forwarded.name == "chat held" and "budget.state" not in forwarded.attributes
    assert commits[0].cancelled()


def test_a_resent_span_is_not_counted_twice(make_rig, sink):
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 1.0}}])
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(16)), bytes(range(8)), "chat gpt-4o"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    for key, value in {"workflow.id": "wf-resent", "gen_ai.request.model": "gpt-4o"}.items():
        kv = span.attributes.add()
        kv.key, kv.value.string_value = key, value
    kv = span.attributes.add()
    kv.key, kv.value.double_value = "cost.usd", 0.3
    with grpc.insecure_channel(f"127.0.0.1:{rig.runner.sidecar.grpc_port}") as channel:
        export = trace_service_pb2_grpc.TraceServiceStub(channel).Export
        export(request, timeout=5)
        export(request, timeout=5)  # resent, as after a lost acknowledgement
    assert sink.wait_for_spans(2)
    d = rig.client.check(workflow_id="wf-resent", policy_id="p", dry_run=True)
    assert d.response.usages[0].spent == pytest.approx(0.3)
    assert rig.metric("costctx_budget_duplicate_spans_total") == 1


def test_absurd_span_costs_are_counted_at_the_ceiling_and_never_break_the_batch(make_rig, sink):
    """cost.usd of 1e20 or infinity is not believed: it is recomputed from the span's tokens at the
    host's price book (gpt-4o), at most the per-call cap max_call_usd; so 2**62 tokens count as
    the cap (over this limit), 10 tokens as their price; never as 0 for a real call, and never
    past Redis's 64-bit counters (which failed the whole batch's commit); NaN counts 0."""
    import math

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from costctx.processors.budget.config import BudgetConfig

    cap = BudgetConfig().max_call_usd
    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 5.0, "tokens": 10**6}}])
    costs = {"normal": 0.3, "huge": 1e20, "infinite": math.inf, "nan": math.nan}
    run = uuid.uuid4().hex[:6]
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for name, cost in costs.items():
        span = spans.add()
        span.trace_id, span.span_id, span.name = uuid.uuid4().bytes, uuid.uuid4().bytes[:8], f"chat {name}"
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        strings = {"workflow.id": f"wf-{name}-{run}", "policy.id": "p", "gen_ai.request.model": "gpt-4o"}
        for key, value in strings.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        kv = span.attributes.add()
        kv.key, kv.value.double_value = "cost.usd", cost
        kv = span.attributes.add()
        kv.key, kv.value.int_value = "gen_ai.usage.input_tokens", 2**62 if name == "huge" else 10
    with grpc.insecure_channel(f"127.0.0.1:{rig.runner.sidecar.grpc_port}") as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
    assert sink.wait_for_spans(len(costs))
    states = {s.name: s.attributes.get("budget.state") for s in sink.spans()}
    assert states == {"chat normal": "ok", "chat huge": "hard", "chat infinite": "ok", "chat nan": "ok"}
    spent = {}
    for name in costs:
        d = rig.client.check(workflow_id=f"wf-{name}-{run}", policy_id="p", dry_run=True)
        spent[name] = d.response.usages[0].spent
    assert spent["infinite"] == pytest.approx(10 * 2.5e-6, abs=2e-6)  # 10 input tokens of gpt-4o
    del spent["infinite"]
    assert spent == {"normal": pytest.approx(0.3), "huge": cap, "nan": 0.0}
    assert rig.metric("costctx_budget_store_errors_total", {"operation": "commit", "outcome": "unstamped"}) == 0


def test_spans_without_valid_ids_are_each_counted(make_rig, sink):
    """Invalid (empty or all-zero) ids identify no span: two such spans are two calls, not a resend."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 5.0}}])
    ids = [(b"", b""), (b"", b""), (bytes(16), bytes(8)), (bytes(16), bytes(8)), (bytes(range(16)), bytes(8))]
    with grpc.insecure_channel(f"127.0.0.1:{rig.runner.sidecar.grpc_port}") as channel:
        export = trace_service_pb2_grpc.TraceServiceStub(channel).Export
        for i, (trace_id, span_id) in enumerate(ids):
            request = trace_service_pb2.ExportTraceServiceRequest()
            span = request.resource_spans.add().scope_spans.add().spans.add()
            span.trace_id, span.span_id, span.name = trace_id, span_id, f"chat {i}"
            span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
            for key, value in {"workflow.id": "wf-no-ids", "gen_ai.request.model": "gpt-4o"}.items():
                kv = span.attributes.add()
                kv.key, kv.value.string_value = key, value
            kv = span.attributes.add()
            kv.key, kv.value.double_value = "cost.usd", 0.3
            export(request, timeout=5)
    assert sink.wait_for_spans(len(ids))
    d = rig.client.check(workflow_id="wf-no-ids", policy_id="p", dry_run=True)
    assert d.response.usages[0].spent == pytest.approx(0.3 * len(ids))
    assert rig.metric("costctx_budget_duplicate_spans_total") == 0


def test_async_client(make_rig):
    import asyncio

    from costctx.client.budget import AsyncBudgetClient

    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 1.0}}])

    async def run() -> tuple:
        async with AsyncBudgetClient(f"127.0.0.1:{rig.runner.sidecar.grpc_port}") as client:
            decisions = await asyncio.gather(*[
                client.check(workflow_id="wf-async", policy_id="p", estimated_cost_usd=0.3) for _ in range(5)])
            allowed = [d for d in decisions if d.allowed]
            released = await client.release(allowed[0].reservation_id)
            after = await client.check(workflow_id="wf-async", policy_id="p", estimated_cost_usd=0.3)
            return decisions, released, after

    decisions, released, after = asyncio.run(run())
    assert sorted(d.decision for d in decisions) == ["ALLOW", "ALLOW", "ALLOW", "BLOCK", "BLOCK"]
    assert released and after.decision == "ALLOW"


def test_http_protobuf_bad_request_gets_a_protobuf_status(make_rig):
    from google.rpc import code_pb2, status_pb2

    rig = make_rig([{"id": "p", "workflow": {"cost_usd": 1.0}}])
    request = urllib.request.Request(f"http://127.0.0.1:{rig.runner.sidecar.http_port}/v1/budget/check",
                                     data=b"\x0a\xff\xff", headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert refused.value.headers["Content-Type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(refused.value.read())
    assert status.code == code_pb2.INVALID_ARGUMENT and "bad CheckRequest" in status.message

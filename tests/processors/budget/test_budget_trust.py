"""Spans are data from whoever reaches the sidecar: what a hostile or skewed span can no longer
do to the budget (issue 16 items 1, 7 and 8). A real sidecar on each store (memory, a real
redis-server), checks through the real BudgetClient, spans as raw OTLP/gRPC exports so the
test controls ids and timestamps exactly as an attacker would."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from costctx.budget.counters import MICRO, window_key
from costctx.budget.decision import CheckPlan, Dim
from costctx.budget.memory import MemoryStore
from costctx.budget.redis_store import RedisStore
from costctx.budget.store import CommitOp
from costctx.client.budget import BudgetClient
from costctx.processors.budget.config import RedisConfig
from tests.support.budget import budget_section, store_param
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.support.wall_clock import clear_of_window_starts

DAY = 86400.0
# The most a span's own end time may move its commit from the sidecar's clock (default 300 s;
# smaller here, so the wait for a moment clear of a UTC midnight stays short).
SKEW = 30.0


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> tuple[str, str | None]:
    return store_param(request)


class Rig:
    def __init__(self, runner) -> None:
        self.runner = runner
        self.port = runner.sidecar.grpc_port
        self.client = BudgetClient(f"127.0.0.1:{self.port}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.export = trace_service_pb2_grpc.TraceServiceStub(self.channel).Export

    def send(self, sink, *, cost: float, workflow_id: str, tenant: str, end: float | None = None,
             reservation_id: str = "", ids: tuple[bytes, bytes] | None = None, model: str = "gpt-4o",
             tokens: tuple[int, int] = (100, 50), cost_key: str = "cost.usd") -> tuple[bytes, bytes]:
        """One model-call span, exported and waited for at the sink; returns its (trace id, span id)."""
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        trace_id, span_id = ids or (uuid.uuid4().bytes, uuid.uuid4().bytes[:8])
        span.trace_id, span.span_id, span.name = trace_id, span_id, f"chat {model}"
        end = time.time() if end is None else end
        span.start_time_unix_nano, span.end_time_unix_nano = int((end - 1) * 1e9), int(end * 1e9)
        strings = {"workflow.id": workflow_id, "owner.tenant": tenant, "gen_ai.request.model": model}
        if reservation_id:
            strings["budget.reservation_id"] = reservation_id
        for key, value in strings.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        kv = span.attributes.add()
        kv.key, kv.value.double_value = cost_key, cost
        for key, count in zip(("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"), tokens, strict=True):
            kv = span.attributes.add()
            kv.key, kv.value.int_value = key, count
        before = sink.span_count()
        self.export(request, timeout=5)
        assert sink.wait_for_spans(before + 1)
        return trace_id, span_id

    def metric(self, name: str, labels: dict) -> float:
        labels = {"processor": "budget", **labels}  # component metrics carry their id
        return self.runner.sidecar.metrics.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.channel.close()
        self.client.close()
        self.runner.stop()


@pytest.fixture
def make_rig(sink, backend) -> Iterator:
    rigs: list[Rig] = []

    def make(policies: list[dict], processors: tuple[str, ...] = ("budget",), **extra) -> Rig:
        config = sidecar_config(sink.grpc_port, processors=list(processors))
        config["processors"]["budget"] = budget_section(*backend, policies, **extra)
        rig = Rig(start_sidecar(config))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def day_spent(rig: Rig, who: str) -> float:
    usage = {u.dimension: u for u in rig.client.check(tenant=who, policy_id="p", dry_run=True).response.usages}
    return usage["tenant.day_usd"].spent


# -- item 1: the span's timestamps pick no window -------------------------------------------


def test_spans_stamped_days_away_spend_inside_todays_ceiling(make_rig, sink):
    """$3/day tenant ceiling, $0.10 calls whose spans are stamped 1 to 4 days in the past or
    the future: at most 30 calls are admitted, and today's counter holds what they spent.
    (Before: every span committed to another day's counter, all 120 calls passed, today $0.)"""
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 3.0}}], max_span_clock_skew=f"{SKEW:g}s")
    who = tenant()
    # Every commit lands within SKEW of the sidecar's clock, and the checks read today's
    # counter: run clear of a UTC day's start on both sides (120 s is the loop on a loaded machine).
    clear_of_window_starts(ahead=120 + SKEW, behind=SKEW)
    admitted = 0
    for i in range(120):
        decision = rig.client.check(tenant=who, workflow_id=f"wf-{i}", policy_id="p", model="gpt-4o",
                                    estimated_cost_usd=0.10)
        if not decision.allowed:
            continue
        admitted += 1
        days = (1 + i % 4) * (-1 if i % 2 else 1)
        rig.send(sink, cost=0.10, workflow_id=f"wf-{i}", tenant=who, end=time.time() + days * DAY,
                 reservation_id=decision.reservation_id)
    assert admitted <= 30
    assert day_spent(rig, who) == pytest.approx(admitted * 0.10)
    assert rig.metric("costctx_budget_untrusted_spans_total", {"reason": "clock_skew"}) == admitted


# -- item 7: a reservation is bound to its workflow and tenant --------------------------------


def test_a_span_of_another_workflow_cannot_release_a_reservation(make_rig, sink):
    """The victim holds $0.90 of a $1 tenant limit; a span of another workflow and tenant
    carrying the victim's reservation id must not give it back (before: a second $0.90 passed)."""
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 1.0}}])
    victim, attacker = tenant(), tenant()
    clear_of_window_starts(ahead=60)  # the hold and the checks after it are in one UTC day
    held = rig.client.check(tenant=victim, workflow_id="wf-victim", policy_id="p", estimated_cost_usd=0.90)
    assert held.allowed and held.reservation_id
    rig.send(sink, cost=0.01, workflow_id="wf-attacker", tenant=attacker, reservation_id=held.reservation_id)
    again = rig.client.check(tenant=victim, workflow_id="wf-victim-2", policy_id="p", estimated_cost_usd=0.90)
    assert not again.allowed
    assert rig.metric("costctx_budget_reservations_total", {"outcome": "refused"}) == 1
    # The victim's own span still replaces it.
    rig.send(sink, cost=0.50, workflow_id="wf-victim", tenant=victim, reservation_id=held.reservation_id)
    assert rig.metric("costctx_budget_reservations_total", {"outcome": "committed"}) == 1
    assert day_spent(rig, victim) == pytest.approx(0.50)


def test_a_squatted_span_id_does_not_hide_the_real_call(make_rig, sink):
    """A span sent first with the victim's trace and span ids and a $0.000001 cost must not make
    the victim's real $0.50 span pass for its resend (before: the victim's day showed $0.000001)."""
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 10.0}}])
    victim = tenant()
    clear_of_window_starts(ahead=60)  # the spends and the reads of today's counter are in one UTC day
    ids = (uuid.uuid4().bytes, uuid.uuid4().bytes[:8])
    rig.send(sink, cost=0.000001, workflow_id="wf-v", tenant=victim, ids=ids)
    rig.send(sink, cost=0.50, workflow_id="wf-v", tenant=victim, ids=ids)
    assert day_spent(rig, victim) == pytest.approx(0.500001)
    # A true resend (same ids, same content) is still counted once.
    rig.send(sink, cost=0.50, workflow_id="wf-v", tenant=victim, ids=ids)
    assert day_spent(rig, victim) == pytest.approx(0.500001)
    assert rig.metric("costctx_budget_duplicate_spans_total", {}) == 1


def test_one_span_reporting_a_huge_cost_cannot_block_a_tenant(make_rig, sink):
    """One span naming the victim's tenant with a provider-reported cost of $1e9 (and 150 tokens of
    gpt-4o), which `price` stamps as cost.usd: the cost is recomputed from the tokens, so the
    victim's next $0.10 call passes (before: BLOCK for the day)."""
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 3.0}}], processors=("price", "budget"))
    victim = tenant()
    rig.send(sink, cost=1e9, workflow_id="wf-x", tenant=victim, tokens=(100, 50), cost_key="gen_ai.usage.cost")
    assert day_spent(rig, victim) < 0.01
    assert rig.client.check(tenant=victim, workflow_id="wf-v", policy_id="p", estimated_cost_usd=0.10).allowed
    assert rig.metric("costctx_budget_untrusted_spans_total", {"reason": "cost_capped"}) == 1


# -- item 8: ids are validated; the Lua release is robust --------------------------------------


def test_ids_with_control_characters_are_refused_at_the_api(make_rig):
    rig = make_rig([{"id": "p", "tenant": {"day_usd": 1.0}}])
    with pytest.raises(grpc.RpcError) as refused:
        rig.client.check(tenant="a\nb", policy_id="p", estimated_cost_usd=0.5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as refused:
        rig.client.release("r\n1")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    url = f"http://127.0.0.1:{rig.runner.sidecar.http_port}/v1/budget/"
    for route, body in (("check", {"envelope": {"workflowId": "w" * 300}}), ("release", {"reservationId": "x\ny"})):
        request = urllib.request.Request(url + route, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused_http:
            urllib.request.urlopen(request, timeout=5)
        assert refused_http.value.code == 400


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
def test_a_reservation_on_a_key_holding_a_newline_is_given_back(store_kind, redis_url):
    """A counter key holding `\\n` (written by anything that bypasses the API's validation):
    release gives its amount back (before, on Redis: Release answered true and the amount
    stayed reserved, so the next check was BLOCKed)."""
    prefix = f"{{n{uuid.uuid4().hex[:8]}}}:"
    store = RedisStore(RedisConfig(url=redis_url, key_prefix=prefix)) if store_kind == "redis" else MemoryStore()
    key = window_key("t", "a", "day", time.time()).replace("t|a|", "t|a\nb|")
    limit = 1 * MICRO

    def plan() -> CheckPlan:
        return CheckPlan([Dim("tenant.day_usd", "usd", key, "usd", limit, limit, limit, 900_000, 900_000, 60_000)],
                         reservation_id=uuid.uuid4().hex, reservation_ttl_ms=60_000, binding=("", "a\nb"))

    async def run() -> None:
        first = plan()
        assert (await store.check(first)).reserved
        assert await store.release(first.reservation_id)
        assert (await store.check(plan())).verdict == "allow"
        results = await store.commit([CommitOp(None, [(key, "usd", 0, 60_000)])])
        assert results[0].values == [0]
        if store_kind == "redis":
            await store.close()

    asyncio.run(run())

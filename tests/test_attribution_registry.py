# ruff: noqa: SIM117 - nested `with` blocks mirror the span trees under test
"""The shared context registry: the store itself (a real Redis), the budget check that
registers the caller's span, and `inherit` reading it (a real sidecar, the real SDK)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from opentelemetry import trace

from costctx.attribution.registry import ContextRegistry, MemoryBackend, RedisBackend
from costctx.budget.store import StoreUnavailable
from costctx.client.budget import BudgetClient
from tests.support.metrics import metric
from tests.support.process import free_port
from tests.support.sdk import tracer_provider
from tests.support.wait import wait_until

ENV = {"workflow_id": "wf-reg", "request_id": "req-1", "tenant": "acme", "feature": "chat"}
FIELDS = {"workflow.id": "wf-reg", "request.id": "req-1", "owner.tenant": "acme", "owner.feature": "chat"}
T1, S1, S2 = bytes(range(1, 17)), bytes(range(1, 9)), bytes(range(11, 19))


def _redis_registry(url: str, **kw) -> ContextRegistry:
    return ContextRegistry(RedisBackend(url, f"{{r{uuid.uuid4().hex[:8]}}}:", 0.5), ttl=60, **kw)


def test_redis_registry_is_shared_between_two_instances_in_one_round_trip(redis_url):
    async def run():
        a = _redis_registry(redis_url)
        b = ContextRegistry(RedisBackend(redis_url, a.backend.prefix, 0.5), ttl=60)
        a.learn(T1, S1, FIELDS)
        assert a.local_span(T1, S1) == FIELDS and a.pending_writes == 2  # span + trace
        await a.flush()
        assert b.local_span(T1, S1) is None
        hits = await b.lookup([(T1, S1), (T1, S2)])
        assert hits == {(T1, S1)}
        assert b.local_trace(T1) == FIELDS  # S2: unknown span, known trace
        assert b.counts.round_trips == 1 and b.counts.hits_remote == 2
        again = await b.lookup([(T1, S1)])  # now from the cache: no round trip
        assert again == {(T1, S1)} and b.counts.round_trips == 1
        await a.close()
        await b.close()

    asyncio.run(run())


def test_a_flush_past_one_script_call_writes_every_entry_with_the_ttl(redis_url):
    """A write larger than WRITE_CHUNK goes in several script calls: every context is stored
    with its value and the registry's TTL, and another sidecar reads each one back."""
    import redis.asyncio as aioredis

    from costctx.attribution.registry import WRITE_CHUNK

    async def run():
        a = _redis_registry(redis_url)
        b = ContextRegistry(RedisBackend(redis_url, a.backend.prefix, 0.5), ttl=60)
        spans = [(bytes([1 + i // 250]) * 16, i.to_bytes(8, "big")) for i in range(WRITE_CHUNK * 2 + 7)]
        for trace_id, span_id in spans:
            a.learn(trace_id, span_id, {**FIELDS, "request.id": span_id.hex()})
        written = a.pending_writes
        assert written > WRITE_CHUNK * 2
        await a.flush()
        assert a.counts.written == written
        assert await b.lookup(spans) == set(spans)
        assert all(b.local_span(t, s) == {**FIELDS, "request.id": s.hex()} for t, s in spans)
        client = aioredis.Redis.from_url(redis_url)
        name = a.backend.prefix + f"ctx|{spans[-1][0].hex()}|{spans[-1][1].hex()}"
        assert 0 < await client.pttl(name) <= 60_000
        await client.aclose()
        await a.close()
        await b.close()

    asyncio.run(run())


def test_registry_store_down_raises_store_unavailable_and_keeps_local_knowledge():
    async def run():
        dead = ContextRegistry(RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "{x}:", 0.2), ttl=60,
                               max_pending_writes=3)
        dead.learn(T1, S1, FIELDS)
        with pytest.raises(StoreUnavailable):
            await dead.flush()
        with pytest.raises(StoreUnavailable):
            await dead.lookup([(T1, S2)])
        assert dead.counts.errors == 2
        assert dead.local_span(T1, S1) == FIELDS
        for i in range(10):  # the write queue is bounded while the store is down
            dead.learn(bytes([i + 1]) * 16, S1, FIELDS)
        assert dead.pending_writes == 3 and dead.dropped_writes > 0
        await dead.close()

    asyncio.run(run())


def test_registry_local_cache_is_bounded():
    registry = ContextRegistry(MemoryBackend(), ttl=60, max_entries=100)
    for i in range(1000):
        registry.learn(i.to_bytes(16, "big"), S1, FIELDS)
    assert len(registry) <= 100 and registry.pending_writes == 0  # memory: nothing to write


def test_a_check_with_trace_and_span_registers_so_the_model_span_is_repaired_without_a_hold(make_sidecar, sink):
    runner = make_sidecar(processors=["inherit", "budget", "envelope"],
                          processor_config={"inherit": {"wait_duration": "30s"}})
    port = runner.sidecar.grpc_port
    provider = tracer_provider(grpc_port=port, service="svc-b", schedule_delay_millis=20)
    tracer = provider.get_tracer("b")
    with BudgetClient(f"127.0.0.1:{port}") as budget:
        # The parent ("handler") is never exported: without the registry the model-call
        # span would wait 30 s for it.
        handler = tracer.start_span("handler")
        with trace.use_span(handler, end_on_exit=False):
            assert budget.check(model="gpt-4o", estimated_cost_usd=0.01, **ENV).allowed
            with tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.request.model": "gpt-4o"}):
                pass
        provider.force_flush()
        assert sink.wait_for_spans(1)
    span = sink.spans()[0]
    assert {k: span.attributes.get(k) for k in FIELDS} == FIELDS
    assert metric(runner, "costctx_inherit_held_spans_total") == 0
    provider.shutdown()


def test_a_span_that_differs_from_the_registered_context_is_a_counted_conflict(make_sidecar, sink):
    runner = make_sidecar(processors=["inherit", "budget", "envelope"])
    port = runner.sidecar.grpc_port
    provider = tracer_provider(grpc_port=port, service="svc-b", schedule_delay_millis=20)
    tracer = provider.get_tracer("b")
    with BudgetClient(f"127.0.0.1:{port}") as budget:
        handler = tracer.start_span("handler")
        with trace.use_span(handler, end_on_exit=False):
            budget.check(model="gpt-4o", estimated_cost_usd=0.01, **ENV)
            # as if baggage said another tenant: kept as carried, counted
            with tracer.start_as_current_span("chat", attributes={**FIELDS, "owner.tenant": "globex"}):
                pass
        provider.force_flush()
        assert sink.wait_for_spans(1)
    assert sink.spans()[0].attributes["owner.tenant"] == "globex"
    assert metric(runner, "costctx_inherit_conflicts_total", field="owner.tenant") == 1
    provider.shutdown()


def test_registry_store_down_spans_flow_with_local_repair_and_errors_counted(make_sidecar, sink):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    strict = {"id": "strict", "workflow_names": ["research"], "workflow": {"cost_usd": 1.0},
              "on_store_error": "closed"}
    runner = make_sidecar(processors=["inherit", "price", "budget", "envelope", "settle"], processor_config={
        "inherit": {"wait_duration": "200ms", "registry": {"backend": "redis", "redis": {"url": dead}}},
        "budget": {"backend": "redis", "redis": {"url": dead}, "policies": [strict]},
        "settle": {"poll_interval": "100ms"}})
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, service="svc", schedule_delay_millis=20)
    tracer = provider.get_tracer("svc")
    with tracer.start_as_current_span("root", attributes=FIELDS):
        with tracer.start_as_current_span("child"):
            pass
        provider.force_flush()  # the child first: held, looked up (fails), then repaired locally
    orphan = tracer.start_span("lost")
    with trace.use_span(orphan, end_on_exit=False), tracer.start_as_current_span("orphan-child"):
        pass
    provider.force_flush()
    assert sink.wait_for_spans(3)
    spans = {s.name: s for s in sink.spans()}
    assert spans["child"].attributes["owner.tenant"] == "acme"
    assert "orphan-child" in spans  # released when its wait ran out, not lost
    assert wait_until(lambda: metric(runner, "costctx_registry_errors_total", operation="lookup") >= 1)
    assert wait_until(lambda: metric(runner, "costctx_registry_errors_total", operation="write") >= 1)
    # The budget check obeys on_store_error (closed: BLOCK), counted.
    with BudgetClient(f"127.0.0.1:{runner.sidecar.grpc_port}") as budget:
        decision = budget.check(model="gpt-4o", estimated_cost_usd=0.01, workflow_name="research", **ENV)
    assert decision.decision == "BLOCK"
    assert metric(runner, "costctx_budget_store_errors_total", operation="check", outcome="fail_closed") == 1
    provider.shutdown()


def test_a_check_with_malformed_ids_is_invalid_argument(make_sidecar):
    import grpc

    from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

    runner = make_sidecar(processors=["inherit", "budget"])
    with BudgetClient(f"127.0.0.1:{runner.sidecar.grpc_port}") as budget:
        request = pb.CheckRequest(model="gpt-4o", trace_id=b"\x01\x02\x03", span_id=bytes(8))
        with pytest.raises(grpc.RpcError) as error:
            budget.stub.Check(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trace_id must be 16 bytes" in error.value.details()

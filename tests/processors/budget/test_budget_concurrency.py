"""Concurrent callers against one budget, on both stores, and two sidecar processes
sharing one Redis. The spend committed is read back from the spans the sink received
(the sidecar commits a span before it forwards it) and from the live counter."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from costctx.client.budget import BudgetClient
from tests.support.budget import budget_config, budget_section, model_call, store_param
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sdk import tracer_provider
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.support.wait import wait_until
from tests.support.wall_clock import clear_of_window_starts

LIMIT = 1.00
CALLERS = 64
# The clients' deadline per check (the client's default is 2 s): 64 callers polling one sidecar
# on a loaded two-core machine wait longer than that for an answer (DEADLINE_EXCEEDED raised in
# a caller failed the in-flight test under load), and the store behind it may take up to its
# own 10 s timeout below. These tests are about what is admitted, not how fast.
CHECK_DEADLINE = 30.0



def agent_sidecar(request, sink, **workflow_limits) -> Iterator:
    """A sidecar with the `agent` policy ($LIMIT per workflow) on the fixture's store."""
    policy = {"id": "agent", "workflow": {"cost_usd": LIMIT, **workflow_limits}}
    backend, redis_url = store_param(request)
    # A store slower than the 250 ms default on a loaded machine fails open (by design) and the
    # overrun bounds below would fail for that, not for admission: give Redis time to answer.
    extra = {"redis": {"timeout": "10s"}} if backend == "redis" else {}
    runner = start_sidecar(budget_config(sink.grpc_port, backend, redis_url, [policy], **extra))
    yield runner
    fail_open = sum(sample.value for family in runner.sidecar.metrics.registry.collect() for sample in family.samples
                    if sample.name == "costctx_budget_store_errors_total" and sample.labels["outcome"] == "fail_open")
    runner.stop()
    assert fail_open == 0, "the store timed out and the policy failed open: the bounds above do not apply"


@pytest.fixture(params=["memory", "redis"])
def budget_sidecar(request, sink):
    yield from agent_sidecar(request, sink)


def run_callers(target: str, grpc_port: int, sink, workflow: str, estimate, actual, callers: int = CALLERS,
                tenant: str = "acme", policy: str = "agent") -> dict:
    """`callers` threads, each: check -> model call (a span) -> next, until BLOCK."""
    client = BudgetClient(target, timeout=CHECK_DEADLINE)
    provider = tracer_provider(grpc_port=grpc_port, schedule_delay_millis=5)
    tracer = provider.get_tracer("agents")
    lock = threading.Lock()
    # Per admission: (spend seen at the check, committed + reserved; calls in flight; its overrun).
    # The spend seen only grows (reservations become larger actuals, new ones add), so the
    # admission that saw the most is the last one: the moment the budget ran out.
    stats = {"allowed": 0, "max_in_flight": 0, "admissions": []}
    start = threading.Barrier(callers)

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        while True:
            est = estimate(rng)
            decision = client.check(model="gpt-4o", estimated_cost_usd=est, workflow_id=workflow, tenant=tenant,
                                    policy_id=policy)
            if not decision.allowed:
                return
            # Calls admitted but not yet committed, as the sidecar saw them: the live
            # reservations at this check (each holds one estimate), plus this one.
            usage = decision.response.usages[0]
            in_flight = round(usage.reserved / est) + 1
            cost = actual(rng, est)
            with lock:
                stats["allowed"] += 1
                stats["max_in_flight"] = max(stats["max_in_flight"], in_flight)
                stats["admissions"].append((usage.spent + usage.reserved, in_flight, cost - est))
            model_call(tracer, decision, workflow_id=workflow, cost_usd=cost, tenant=tenant)

    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))
    provider.force_flush()
    provider.shutdown()
    assert sink.wait_for_spans(stats["allowed"], timeout=30)
    spent = sum(s.attributes["cost.usd"] for s in sink.spans() if s.attributes.get("workflow.id") == workflow)
    live = client.check(workflow_id=workflow, tenant=tenant, policy_id=policy, dry_run=True)
    client.close()
    stats["committed"] = spent
    stats["overruns"] = [overrun for _, _, overrun in stats["admissions"]]
    seen, stats["in_flight_at_exhaustion"], _ = max(stats["admissions"])
    stats["seen_at_exhaustion"] = seen
    stats["counter"] = live.response.usages[0] if live.response.usages else None
    return stats


def test_estimates_at_least_actual_never_exceed_the_limit(budget_sidecar, sink):
    port = budget_sidecar.sidecar.grpc_port
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    stats = run_callers(f"127.0.0.1:{port}", port, sink, workflow,
                        estimate=lambda rng: 0.05, actual=lambda rng, est: rng.uniform(0.03, 0.05))
    assert stats["committed"] <= LIMIT + 1e-9
    assert stats["allowed"] >= 20  # actuals below estimates free budget for more calls
    # The live counter reconciles with the recorded spend, and no reservation is left behind.
    assert stats["counter"].spent == pytest.approx(stats["committed"], abs=1e-5)
    assert stats["counter"].reserved == 0


def test_exact_estimates_admit_exactly_the_limit(budget_sidecar, sink):
    port = budget_sidecar.sidecar.grpc_port
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    stats = run_callers(f"127.0.0.1:{port}", port, sink, workflow,
                        estimate=lambda rng: 0.05, actual=lambda rng, est: est)
    assert stats["allowed"] == 20  # $1.00 / $0.05, under 64-way contention
    assert stats["committed"] == pytest.approx(1.00)


def test_underestimates_overrun_by_at_most_the_calls_in_flight(budget_sidecar, sink):
    """Estimates below the actual cost: admission is still exact on the estimates, so the
    spend passes the limit only by the overruns of the calls in flight when it ran out:
    at most one call's overrun for each call admitted but not yet committed then."""
    port = budget_sidecar.sidecar.grpc_port
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    estimate = 0.03  # does not divide the limit: a call admitted past it would show
    stats = run_callers(f"127.0.0.1:{port}", port, sink, workflow,
                        estimate=lambda rng: estimate, actual=lambda rng, est: est + 0.01)
    overrun = max(stats["overruns"])
    assert overrun == pytest.approx(0.01) and min(stats["overruns"]) == pytest.approx(0.01)
    assert stats["committed"] > LIMIT  # the scenario does overrun
    seen, in_flight = stats["seen_at_exhaustion"], stats["in_flight_at_exhaustion"]
    # The last admission fitted its estimate under the limit ...
    assert seen + estimate <= LIMIT + 1e-9
    # ... and the final spend is what it saw plus its call and those in flight then, each at
    # its actual cost (every admitted call committed, no reservation expired) ...
    assert stats["committed"] == pytest.approx(seen + estimate + in_flight * overrun, abs=1e-5)
    # ... hence the bound, from the calls in flight at exhaustion, not the caller count.
    assert stats["committed"] - LIMIT <= in_flight * overrun + 1e-9
    assert in_flight <= stats["max_in_flight"] < CALLERS
    assert stats["counter"].spent == pytest.approx(stats["committed"], abs=1e-5)


def test_a_serial_caller_overruns_by_at_most_one_call(budget_sidecar, sink):
    port = budget_sidecar.sidecar.grpc_port
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    client = BudgetClient(f"127.0.0.1:{port}", timeout=CHECK_DEADLINE)
    provider = tracer_provider(grpc_port=port, schedule_delay_millis=5)
    tracer = provider.get_tracer("agent")
    spent = 0.0
    while True:
        decision = client.check(estimated_cost_usd=0.04, workflow_id=workflow, policy_id="agent")
        if not decision.allowed:
            break
        model_call(tracer, decision, workflow_id=workflow, cost_usd=0.05)
        spent += 0.05
        provider.force_flush()  # the agent loop waits for its call: the next check sees the actual
        assert sink.wait_for_spans(round(spent / 0.05))
    provider.shutdown()
    client.close()
    assert LIMIT < spent <= LIMIT + 0.01 + 1e-9


def test_two_sidecar_processes_share_one_tenant_ceiling(redis_url, sink, tmp_path: Path):
    prefix = f"{{two{uuid.uuid4().hex[:8]}}}:"
    sidecars = []
    # A tenant *day* ceiling: the two processes (their own clocks) must not start a new UTC day
    # part-way through the spend; 3 minutes covers their start-up and the race on a loaded machine.
    clear_of_window_starts(ahead=180)
    try:
        for i in range(2):
            config = with_fixed_ports(sidecar_config(sink.grpc_port, processors=["budget"]))
            section = budget_section("redis", redis_url, [{"id": "tenant-cap", "tenant": {"day_usd": LIMIT}}])
            section["redis"]["key_prefix"] = prefix  # one deployment: one key space
            config["processors"]["budget"] = section
            workdir = tmp_path / f"sidecar{i}"
            workdir.mkdir()
            sidecars.append(SidecarProcess(config, workdir).start())
        tenant = f"acme-{uuid.uuid4().hex[:6]}"
        clients = [BudgetClient(s.grpc_target, timeout=CHECK_DEADLINE) for s in sidecars]
        providers = [tracer_provider(grpc_port=int(s.grpc_target.rsplit(":", 1)[1]), schedule_delay_millis=5)
                     for s in sidecars]
        lock = threading.Lock()
        allowed = [0, 0]
        barrier = threading.Barrier(32)
        # Half the ceiling spent through sidecar 0 first, committed from its spans.
        tracer0 = providers[0].get_tracer("agents")
        for i in range(10):
            d = clients[0].check(estimated_cost_usd=0.05, workflow_id=f"wf-first-{i}", tenant=tenant,
                                 policy_id="tenant-cap")
            assert d.allowed
            allowed[0] += 1
            model_call(tracer0, d, workflow_id=f"wf-first-{i}", cost_usd=0.05, tenant=tenant)
        providers[0].force_flush()
        assert sink.wait_for_spans(10, timeout=30)
        seen = clients[1].check(workflow_id="wf-peek", tenant=tenant, policy_id="tenant-cap", dry_run=True)
        assert seen.response.usages[0].spent == pytest.approx(0.5)  # sidecar 1 sees sidecar 0's spend

        def caller(n: int) -> None:
            side = n % 2  # half the callers on each sidecar, different workflows, one tenant
            tracer = providers[side].get_tracer("agents")
            barrier.wait()
            while True:
                workflow = f"wf-{n}-{uuid.uuid4().hex[:6]}"
                d = clients[side].check(estimated_cost_usd=0.05, workflow_id=workflow, tenant=tenant,
                                        policy_id="tenant-cap")
                if not d.allowed:
                    return
                with lock:
                    allowed[side] += 1
                model_call(tracer, d, workflow_id=workflow, cost_usd=0.05, tenant=tenant)

        # Then 32 concurrent callers, half on each sidecar, race for the other half.
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(caller, range(32)))
        for provider in providers:
            provider.force_flush()
            provider.shutdown()
        assert sink.wait_for_spans(sum(allowed), timeout=30)
        committed = sum(s.attributes["cost.usd"] for s in sink.spans() if s.attributes.get("owner.tenant") == tenant)
        # The race admitted exactly the other half, whichever sidecar's callers won it.
        assert sum(allowed) == 20 and committed == pytest.approx(LIMIT)
        states = {s.attributes.get("budget.state") for s in sink.spans() if s.attributes.get("owner.tenant") == tenant}
        assert "hard" in states
        for client in clients:
            last = client.check(estimated_cost_usd=0.01, workflow_id="wf-late", tenant=tenant, policy_id="tenant-cap")
            assert last.decision == "BLOCK" and last.response.dimension == "tenant.day_usd"
            client.close()
    finally:
        for s in sidecars:
            s.close()


@pytest.fixture(params=["memory", "redis"])
def serialized_sidecar(request, sink):
    yield from agent_sidecar(request, sink, max_in_flight=1)


def test_underestimates_with_one_call_in_flight_overrun_by_at_most_one_call(serialized_sidecar, sink):
    """64 concurrent callers, estimates $0.01 below the actual cost, and `max_in_flight: 1`:
    the workflow's calls are admitted one at a time, so the spend passes the limit by at most
    one call's overrun."""
    port = serialized_sidecar.sidecar.grpc_port
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    client = BudgetClient(f"127.0.0.1:{port}", timeout=CHECK_DEADLINE)
    provider = tracer_provider(grpc_port=port, schedule_delay_millis=5)
    tracer = provider.get_tracer("agents")
    lock = threading.Lock()
    stats = {"allowed": 0, "waited": 0}
    barrier = threading.Barrier(CALLERS)

    def caller(n: int) -> None:
        barrier.wait()
        while True:
            d = client.check(estimated_cost_usd=0.04, workflow_id=workflow, policy_id="agent")
            if d.blocked and d.response.dimension == "workflow.in_flight":
                with lock:
                    stats["waited"] += 1
                time.sleep(0.002)  # another call of this workflow is running: wait for it
                continue
            if d.blocked:
                return
            with lock:
                stats["allowed"] += 1
            model_call(tracer, d, workflow_id=workflow, cost_usd=0.05)

    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(caller, range(CALLERS)))
    provider.force_flush()
    provider.shutdown()
    assert sink.wait_for_spans(stats["allowed"], timeout=30)
    committed = sum(s.attributes["cost.usd"] for s in sink.spans() if s.attributes.get("workflow.id") == workflow)
    assert stats["waited"] > 0  # the callers really did contend
    assert LIMIT < committed <= LIMIT + 0.01 + 1e-9
    final = client.check(workflow_id=workflow, policy_id="agent", dry_run=True)
    assert final.decision == "BLOCK" and final.response.dimension == "workflow.cost_usd"
    client.close()


def test_a_breaker_tripped_through_one_sidecar_is_obeyed_by_another(redis_url, sink, tmp_path: Path):
    """README: the breaker's flag lives in the store, so all sidecars obey it. Two `costctx run`
    processes on one Redis key space: spend through sidecar 0 trips the tenant; sidecar 1,
    which saw none of it, blocks that tenant (state tripped) and no other."""
    prefix = f"{{brk{uuid.uuid4().hex[:8]}}}:"
    policy = {"id": "p", "workflow": {"cost_usd": 100.0}}
    breaker = {"tenant_usd_per_window": 0.5, "velocity_window": "60s", "cooldown": "60s",
               "workflow_median_multiple": None}
    sidecars = []
    try:
        for i in range(2):
            config = with_fixed_ports(sidecar_config(sink.grpc_port, processors=["budget"]))
            section = budget_section("redis", redis_url, [policy], breaker=breaker)
            section["redis"]["key_prefix"] = prefix
            config["processors"]["budget"] = section
            workdir = tmp_path / f"sidecar{i}"
            workdir.mkdir()
            sidecars.append(SidecarProcess(config, workdir).start())
        tenant = f"hot-{uuid.uuid4().hex[:6]}"
        clients = [BudgetClient(s.grpc_target, timeout=CHECK_DEADLINE) for s in sidecars]
        provider = tracer_provider(grpc_port=int(sidecars[0].grpc_target.rsplit(":", 1)[1]), schedule_delay_millis=5)
        tracer = provider.get_tracer("agents")
        for i in range(3):  # $0.60 inside the window: past $0.50
            workflow = f"wf-hot-{i}"
            d = clients[0].check(estimated_cost_usd=0.2, workflow_id=workflow, tenant=tenant, policy_id="p")
            assert d.allowed
            model_call(tracer, d, workflow_id=workflow, cost_usd=0.2, tenant=tenant)
        provider.force_flush()
        provider.shutdown()
        assert sink.wait_for_spans(3, timeout=30)
        trips = {"kind": "tenant_velocity"}
        assert wait_until(lambda: sidecars[0].metric("costctx_budget_breaker_trips_total", trips) == 1)
        assert sidecars[1].metric("costctx_budget_breaker_trips_total", trips) == 0  # it saw no spend

        d = clients[1].check(estimated_cost_usd=0.01, workflow_id="wf-elsewhere", tenant=tenant, policy_id="p")
        assert d.decision == "BLOCK" and d.state == "tripped"
        assert clients[1].check(estimated_cost_usd=0.01, workflow_id="wf-calm", tenant="calm", policy_id="p").allowed
        for client in clients:
            client.close()
    finally:
        for s in sidecars:
            s.close()

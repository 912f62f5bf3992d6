"""Budgets and the context registry on a real three-node Redis Cluster on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from costctx.attribution.registry import ContextRegistry, RedisBackend
from tests.processors.budget.test_budget_concurrency import LIMIT, run_callers
from tests.support.cluster import node_of, redis_cluster_fixture
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.support.sink import PatientSink

# Real sidecars and a sink: the outer loop.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[list[int]]:
    yield from redis_cluster_fixture(tmp_path_factory.mktemp("cluster"))


def _tenants_on_distinct_nodes(ports: list[int], prefix: str) -> list[str]:
    """Tenants whose keys land on three different nodes."""
    found: dict[int, str] = {}
    for i in range(200):
        tenant = f"tenant-{i}"
        found.setdefault(node_of(ports, f"{prefix}{{{tenant}}}:x"), tenant)
        if len(found) == 3:
            return list(found.values())
    raise AssertionError("no three tenants on distinct nodes")


def test_tenants_on_different_nodes_each_admit_no_more_than_the_limit_under_64_callers(cluster):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    tenants = _tenants_on_distinct_nodes(cluster, prefix)
    policy = {"id": "agent", "workflow": {"cost_usd": LIMIT}, "tenant": {"day_usd": 5 * LIMIT}}
    for tenant in tenants:
        with PatientSink() as sink:  # its own sink: run_callers counts every span the sink has
            config = sidecar_config(sink.grpc_port, processors=["budget"])
            config["processors"]["budget"] = {
                "backend": "redis", "policies": [policy],
                # 10 s, as tests/processors/budget/test_budget_concurrency.py: a check slower than
                # the timeout fails open (by design), and 64 callers on a loaded two-core machine
                # would then be admitted past the limit for that, not for admission.
                "redis": {"url": f"redis://127.0.0.1:{cluster[0]}/0", "key_prefix": prefix, "cluster": True,
                          "timeout": "10s"},
            }
            runner = start_sidecar(config)
            try:
                port = runner.sidecar.grpc_port
                stats = run_callers(f"127.0.0.1:{port}", port, sink, f"wf-{uuid.uuid4().hex[:8]}",
                                    estimate=lambda rng: 0.05, actual=lambda rng, est: est, tenant=tenant)
            finally:
                runner.stop()
        assert stats["allowed"] == 20  # $1.00 / $0.05, under 64-way contention
        assert stats["committed"] <= LIMIT + 1e-9
        assert stats["counter"].spent == pytest.approx(stats["committed"], abs=1e-5)
        assert stats["counter"].reserved == 0
    # Each tenant's keys live on its own node.
    assert len({node_of(cluster, f"{prefix}{{{t}}}:x") for t in tenants}) == 3


def test_feature_ceilings_are_refused_on_a_cluster():
    from pydantic import ValidationError

    from costctx.processors.budget.config import BudgetConfig

    with pytest.raises(ValidationError, match="cross-slot"):
        BudgetConfig.model_validate({"backend": "redis", "redis": {"cluster": True}, "policies": [
            {"id": "p", "feature": {"day_usd": 5}}]})


def test_the_registry_works_across_cluster_nodes(cluster):
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    prefix = f"r{uuid.uuid4().hex[:8]}:"
    traces = [uuid.uuid4().bytes for _ in range(60)]
    span = bytes(range(1, 9))

    async def run():
        writer = ContextRegistry(RedisBackend(url, prefix, 1.0, cluster=True), ttl=60)
        reader = ContextRegistry(RedisBackend(url, prefix, 1.0, cluster=True), ttl=60)
        for i, trace_id in enumerate(traces):
            writer.learn(trace_id, span, {"workflow.id": f"wf-{i}", "owner.tenant": "acme"})
        await writer.flush()
        hits = await reader.lookup([(t, span) for t in traces])
        assert len(hits) == len(traces)
        assert all(reader.local_trace(t)["workflow.id"] == f"wf-{i}" for i, t in enumerate(traces))
        keys = [writer.backend.key(f"ctx|{t.hex()}") for t in traces]
        await writer.close()
        await reader.close()
        return keys

    keys = asyncio.run(run())
    assert len({node_of(cluster, key) for key in keys}) == 3  # spread over every node

"""The in-process registry store sidecars of one process share (the demo without redis-server):
two registries over it see each other's contexts, as over one Redis; entries expire and are bounded."""

from __future__ import annotations

import asyncio

from costctx.attribution.build import build_registry
from costctx.attribution.config import RegistryConfig
from costctx.attribution.inprocess import InProcessRegistryBackend
from costctx.attribution.registry import ContextRegistry
from tests.support.clock import Clock

FIELDS = {"workflow.id": "wf-ip", "owner.tenant": "acme"}
T1, T2, S1 = bytes(range(1, 17)), bytes(range(2, 18)), bytes(range(1, 9))


def test_two_registries_over_one_in_process_store_share_what_either_learns():
    async def run():
        store = InProcessRegistryBackend()
        a = build_registry(RegistryConfig(), store)
        b = build_registry(RegistryConfig(), store)
        assert a.shared and b.shared
        a.learn(T1, S1, FIELDS)
        await a.flush()
        assert await b.lookup([(T1, S1)]) == {(T1, S1)}
        assert b.local_trace(T1) == FIELDS and b.counts.hits_remote == 2
        assert await b.lookup_traces([T2]) == set()

    asyncio.run(run())


def test_a_redis_config_is_not_replaced_by_the_in_process_store():
    registry = build_registry(RegistryConfig(backend="redis"), InProcessRegistryBackend())
    assert type(registry.backend).__name__ == "RedisBackend"


def test_in_process_entries_expire_with_the_registry_ttl_and_are_bounded():
    async def run():
        clock = Clock(0.0)
        store = InProcessRegistryBackend(max_entries=2, timer=clock)
        await store.write([("ctx|a", b"1")], ttl_ms=1000)
        clock.now = 0.5
        assert await store.read(["ctx|a"]) == [b"1"]
        clock.now = 1.5
        assert await store.read(["ctx|a"]) == [None]
        await store.write([("ctx|b", b"2"), ("ctx|c", b"3"), ("ctx|d", b"4")], ttl_ms=1000)
        assert len(store) == 2

    asyncio.run(run())


def test_a_registry_expires_locally_but_reads_back_from_the_in_process_store():
    async def run():
        clock = Clock(0.0)
        store = InProcessRegistryBackend(timer=clock)
        a = ContextRegistry(store, ttl=10, timer=clock)
        b = ContextRegistry(store, ttl=10, timer=clock)
        a.learn(T1, None, FIELDS)
        await a.flush()
        clock.now = 5
        assert await b.lookup_traces([T1]) == {T1}
        clock.now = 11
        c = ContextRegistry(store, ttl=10, timer=clock)
        assert await c.lookup_traces([T1]) == set()

    asyncio.run(run())


def test_sidecars_given_one_share_use_its_budget_store_and_registry_store():
    from costctx.attribution.inprocess import InProcessShare
    from costctx.cli.demo import demo_config
    from costctx.service.app import Sidecar
    from costctx.service.config.loader import build_config

    def build(share):
        config = demo_config(4317)
        config["processors"]["inherit"] = {**(config["processors"].get("inherit") or {}), "registry": {}}
        return Sidecar(build_config(config, environ={}), share)

    share = InProcessShare()
    a, b, alone = build(share), build(share), build(None)
    assert a.host.budget_engine.store is share.budget_store is b.host.budget_engine.store
    assert a.host.context_registry.backend is share.registry_backend is b.host.context_registry.backend
    assert a.host.context_registry is not b.host.context_registry  # each keeps its own cache
    assert alone.host.budget_engine.store is not share.budget_store
    assert not alone.host.context_registry.shared

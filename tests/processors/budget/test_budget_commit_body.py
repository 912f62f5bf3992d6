"""The budget processor's one per-segment commit body (`_commit_segments`, the plain case its
fast path) against today's two (commit_oracle.py: `_commit_plain` without policies,
`_commit_segments` with them, verbatim from 33ec060): on random batches, with and without
policies and the breaker's median rule, hot workflows tripping, the store's size bound passed
and envelope ids with the characters the counter keys escape, both leave the same counters
(down to the order of keys, fields and touches eviction and expiry follow), the same stamps,
breaker state and metrics, on both codecs."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costctx.pdata.view_batch import ViewBatch
from tests.processors.budget import commit_oracle
from tests.processors.budget.test_budget_spend_read import BREAKER, CONFIGS, _request, _samples, _spans, _state
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

CONFIGS_HERE = {**CONFIGS, "plain": {}, "plain-no-median": {"breaker": {"workflow_median_multiple": None}}}


def _store_order(processor) -> tuple:
    """The memory store as eviction and expiry read it: counters with their fields in order,
    keys in creation order, each TTL's touch order (the TTLs in the order they came)."""
    store = processor.engine.store
    return ([(key, list(counter.items())) for key, counter in store.hashes.items()], list(store.expires.items()),
            [(ttl, list(order.items())) for ttl, order in store._by_ttl.items()], store.evicted_total)


def _pair(options: dict, now: float, max_keys: int) -> tuple:
    """(today's body, the oracle's), their stores on one fixed clock."""
    new, old = (standalone_processor("budget", **options) for _ in range(2))
    commit_oracle.install(old)
    for processor in (new, old):
        assert processor._by_segment
        processor.engine.store.max_keys = max_keys
        processor.engine.store.clock = lambda: now  # its expiries compared
        processor.engine.store.reservations.clear()
    return new, old


def _same(new, old, codec, spans: list[dict]) -> set:
    outputs, states = [], set()
    for processor in (new, old):
        batch = ViewBatch(codec, _request(spans), processor.watched_keys())
        assert processor.process_view(batch) is batch
        outputs.append(batch.payload())
        states = {s.attrs.get("budget.state") for s in batch.view.spans}
    assert outputs[0] == outputs[1]
    assert _store_order(new) == _store_order(old)
    assert _state(new) == _state(old) and _samples(new) == _samples(old)
    return states


@pytest.mark.parametrize("codec", available_codecs(), ids=lambda c: c.name)
@pytest.mark.parametrize("config", sorted(CONFIGS_HERE))
@pytest.mark.parametrize("seed", range(3))
def test_the_one_body_leaves_what_the_two_left(codec, config, seed, monkeypatch):
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    new, old = _pair(CONFIGS_HERE[config], now, max_keys=12 if seed == 0 else 50_000)
    rng = random.Random(seed)
    tripped = False
    states: set = set()
    for serial in range(1, 14):
        states |= _same(new, old, codec, _spans(rng, rng.choice([1, 7, 40]), now, serial + 100 * seed))
        tripped = tripped or bool(new.engine.breaker._tripped_until)
        for workflow in ("w1", "w3"):  # some workflows finish: the medians move
            if rng.random() < 0.5:
                new.engine.breaker.finish(workflow)
                old.engine.breaker.finish(workflow)
    if seed == 0:
        assert new.engine.store.evicted_total  # the bound was passed, and evicted alike
    if config in ("breaker", "policies"):
        assert tripped or seed  # seed 0 covers a hot workflow tripping
    if config.startswith("policies"):
        assert states >= {"ok", "soft", "hard"}


def test_a_hot_workflow_without_policies_trips_as_before(monkeypatch):
    """The plain fast path with a workflow passing the median rule's bound midway."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    new, old = _pair({"breaker": BREAKER}, now, max_keys=50_000)
    codec = available_codecs()[0]
    for i, cost in enumerate([0.01, 0.01, 0.012]):  # three finished workflows: median 0.01
        _same(new, old, codec, [{"ids": (bytes([i + 1]) * 16, b"\x01" * 8), "end": int(now * 1e9),
                                 "start": int(now * 1e9), "parent": b"",
                                 "fields": {"workflow.id": f"done{i}", "workflow.name": "answer", "cost.usd": cost,
                                            "owner.tenant": "acme"}}])
    spans = [{"ids": (b"\x09" * 16, bytes([0, i + 1]) * 4), "end": int(now * 1e9), "start": int(now * 1e9),
              "parent": b"p" * 8, "fields": {"workflow.id": "big", "workflow.name": "answer", "cost.usd": 0.003,
                                             "owner.tenant": "acme", "owner.feature": "chat"}} for i in range(10)]
    _same(new, old, codec, spans)
    assert new.engine.breaker._tripped_until and new.engine.store.flags


# Envelope ids with what the counter keys escape (%, |, newline), separators other stores use
# (colons, braces: a Redis Cluster hash tag), unicode, empty and very long ones.
_odd = st.one_of(st.sampled_from(["", "a", "a|b", "%7C", "100%", "x\ny", "{t}", "a:b:c", "é-ü", "日本", "\U0001f600",
                                  "|" * 40, "%" * 300, "w" * 256]),
                 st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.tuples(_odd, _odd, _odd, _odd), min_size=1, max_size=6), seed=st.integers(0, 1000),
       policies=st.booleans())
def test_odd_envelope_ids_name_the_same_counters(ids, seed, policies, monkeypatch):
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    options = {"breaker": BREAKER, **({"policies": CONFIGS["policies"]["policies"], "default_policy": "p1"}
                                      if policies else {})}
    new, old = _pair(options, now, max_keys=50_000)
    rng = random.Random(seed)
    codec = available_codecs()[seed % len(available_codecs())]
    for serial in (1, 2):
        spans = []
        for i in range(rng.choice([3, 20])):
            workflow_id, name, tenant, feature = rng.choice(ids)
            fields = {"workflow.id": workflow_id, "workflow.name": name, "owner.tenant": tenant,
                      "owner.feature": feature, "cost.usd": rng.choice([0.0, 0.001, 0.02]),
                      "gen_ai.usage.input_tokens": rng.randrange(0, 50)}
            end = now - rng.choice([0.0, 3600.0 * rng.random()])  # some in the hour before
            spans.append({"ids": ((seed * 10 + serial).to_bytes(8, "big") * 2, (i + 1).to_bytes(8, "big")),
                          "end": int(end * 1e9), "start": int((end - 1) * 1e9), "fields": fields,
                          "parent": b"p" * 8})
        _same(new, old, codec, spans)

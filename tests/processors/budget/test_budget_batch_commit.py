"""The memory store's batch commit (amounts summed per counter, budget/batch_commit.py) against
the per-span commit it replaced (engine.plan_commits + MemoryStore.commit_now + engine.verdicts,
which the shared store still runs): the same counters, the same `policy.id` / `budget.state`
stamps, the same breaker trips, batch after batch, on both codecs."""

from __future__ import annotations

import random
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.budget.counters import MICRO
from costctx.budget.policy import Context, SpanSpend
from costctx.pdata.view_batch import ViewBatch
from tests.support.codecs import available_codecs
from tests.support.otlp import kv
from tests.support.processors import standalone_processor

POLICIES = [
    {"id": "p1", "workflow": {"cost_usd": 0.02, "tokens": 4000}, "tenant": {"day_usd": 0.2, "hour_usd": 0.1},
     "soft_threshold": 0.5},
    {"id": "p2", "workflow_names": ["report"], "workflow": {"steps": 6}, "feature": {"hour_usd": 0.05},
     "features": {"search": {"month_usd": 0.03}}},
]
BREAKER = {"workflow_median_multiple": 2.0, "min_samples": 2, "tenant_usd_per_window": 0.15}


def _spans(rng: random.Random, count: int, now: float, serial: int) -> list[dict]:
    out = []
    for i in range(count):
        fields = {"cost.usd": rng.choice([0.0, 0.0004, 0.001, 0.003, 0.009, 0.02]),
                  "gen_ai.usage.input_tokens": rng.randrange(0, 900),
                  "gen_ai.usage.output_tokens": rng.randrange(0, 300)}
        for key, choices in (("workflow.id", ["w1", "w2", "w3", "w4", ""]), ("workflow.name", ["answer", "report"]),
                             ("owner.tenant", ["acme", "globex", ""]), ("owner.feature", ["chat", "search", ""]),
                             ("policy.id", ["p1", "p2", "", None])):
            value = rng.choice(choices)
            if value is not None:
                fields[key] = value
        if rng.random() < 0.3:
            del fields["cost.usd"]  # a model call by its tokens alone, or not one at all
        end = now - rng.uniform(0, 20)
        out.append({"ids": (serial.to_bytes(8, "big") * 2, (i + 1).to_bytes(8, "big")), "end": end,
                    "start": end - rng.uniform(0, 5), "fields": fields})
    return out


def _request(spans: list[dict]) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for spec in spans:
        span = scope.spans.add(trace_id=spec["ids"][0], span_id=spec["ids"][1], parent_span_id=b"p" * 8, name="chat",
                               start_time_unix_nano=int(spec["start"] * 1e9), end_time_unix_nano=int(spec["end"] * 1e9))
        span.attributes.extend(kv(k, v) for k, v in spec["fields"].items())
    return request.SerializeToString()


def _per_span_reference(processor, spans: list[dict], now: float) -> list[tuple[str | None, str | None]]:
    """What the per-span path commits and stamps: (policy.id stamped, budget.state) per span."""
    engine = processor.engine
    spends, positions = [], []
    for position, spec in enumerate(spans):
        fields = spec["fields"]
        if "cost.usd" not in fields and "gen_ai.usage.input_tokens" not in fields:
            continue
        ctx = Context(fields.get("workflow.id", ""), fields.get("workflow.name", ""), fields.get("owner.tenant", ""),
                      fields.get("owner.feature", ""), fields.get("policy.id") or "", 0)
        micro = round(fields.get("cost.usd", 0.0) * MICRO)
        tokens = fields["gen_ai.usage.input_tokens"] + fields["gen_ai.usage.output_tokens"]
        start_ms = int(spec["start"] * 1e9) // 1_000_000
        spends.append(SpanSpend(ctx, micro, tokens, 1, start_ms, int(spec["end"] * 1e9) / 1e9, None))
        positions.append(position)
    ops, wheres = engine.plan_commits(spends)
    results = engine.store.commit_now(ops)
    verdicts, trips = engine.verdicts(spends, wheres, results)
    for _, key, tenant in trips:
        engine.store.trip_now(key, processor.config.breaker.cooldown, tenant)
    stamps: list[tuple[str | None, str | None]] = [(None, None)] * len(spans)
    for position, verdict in zip(positions, verdicts, strict=True):
        policy = verdict.policy_id if verdict.policy_id and not spans[position]["fields"].get("policy.id") else None
        stamps[position] = (policy, verdict.state)
    return stamps


def _stamped(now, sent):
    return None if now == sent else now


@pytest.mark.parametrize("codec", available_codecs(), ids=lambda c: c.name)
@pytest.mark.parametrize("seed", range(6))
def test_the_batch_commit_stamps_and_counts_as_the_per_span_commit(codec, seed):
    options = {"policies": POLICIES, "breaker": BREAKER}
    batched = standalone_processor("budget", **options)
    per_span = standalone_processor("budget", **options)
    assert batched.engine.store.sync and batched.engine.store is not per_span.engine.store
    rng = random.Random(seed)
    states_seen = set()
    for serial in range(1, 9):
        now = time.time()
        spans = _spans(rng, rng.choice([1, 7, 40]), now, serial + 100 * seed)
        batch = ViewBatch(codec, _request(spans), batched.watched_keys())
        assert batched.process_view(batch) is batch
        got = [(_stamped(batch.view.spans[i].attrs.get("policy.id"), spec["fields"].get("policy.id")),
                batch.view.spans[i].attrs.get("budget.state")) for i, spec in enumerate(spans)]
        assert got == _per_span_reference(per_span, spans, now)
        assert batched.engine.store.hashes == per_span.engine.store.hashes
        assert batched.engine.store.flags.keys() == per_span.engine.store.flags.keys()
        assert dict(batched.engine.breaker._running).keys() == dict(per_span.engine.breaker._running).keys()
        assert {k: v[:2] for k, v in batched.engine.breaker._running.items()} == \
            {k: v[:2] for k, v in per_span.engine.breaker._running.items()}
        states_seen.update(state for _, state in got)
        for workflow in ("w1", "w3"):  # some workflows finish: the medians move
            if rng.random() < 0.5:
                batched.engine.breaker.finish(workflow)
                per_span.engine.breaker.finish(workflow)
    assert states_seen >= {"ok", "soft", "hard", None}  # the comparison covered every state

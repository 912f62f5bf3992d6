"""The `budget` processor: commits each model-call span's actual spend to the budget
counters (replacing the reservation its check made), stamps `policy.id` and
`budget.state`, and serves the budget check on the sidecar's gRPC and HTTP ports.

Runs after `price` (it reads `cost.usd`) and before `envelope`. With the Redis store a
batch is held for the one round trip that commits its spans, then released stamped.
"""

from __future__ import annotations

import asyncio
import time

from cachetools import TTLCache

from sidecar.budget.config import BudgetConfig
from sidecar.budget.counters import spent_micro, spent_tokens
from sidecar.budget.engine import BudgetEngine, SpanVerdict
from sidecar.budget.metrics import BudgetMetrics
from sidecar.budget.policy import Context, SpanSpend
from sidecar.budget.service import grpc_handlers, http_routes
from sidecar.budget.store import StoreUnavailable
from sidecar.pdata import TraceBatch
from sidecar.pdata.batch import SpanRecord
from sidecar.pdata.ids import span_identity
from sidecar.processors.base import Processor

COST_KEY = "cost.usd"
RESERVATION_KEY = "budget.reservation_id"
STATE_KEY = "budget.state"
POLICY_KEY = "policy.id"


class BudgetProcessor(Processor):
    type_name = "budget"
    config_model = BudgetConfig
    config: BudgetConfig

    def __init__(self, name, config, context) -> None:
        super().__init__(name, config, context)
        self.metrics = BudgetMetrics(context.metrics.registry)
        self.engine = BudgetEngine(config, self.metrics, context.services)
        context.services["budget"] = self.engine
        self._markers = tuple(context.envelope.llm_span_markers) + (COST_KEY,)
        # held batches (Redis store); released once, by their commit task or by shutdown
        self._held: dict[int, TraceBatch] = {}
        # Commit tasks still running: shutdown releases their batches but the tasks run on
        # until close() cancels them, before the store they use is closed.
        self._commits: set[asyncio.Task] = set()
        # Spans already committed (trace id + span id): an exporter that resends a batch
        # after a lost acknowledgement must not count its spend twice.
        self._committed: TTLCache = TTLCache(maxsize=200_000, ttl=900)

    # -- the service this processor provides ------------------------------------------------
    def grpc_handlers(self) -> list:
        return grpc_handlers(self.engine)

    def http_routes(self) -> list:
        return http_routes(self.engine)

    # -- spans ----------------------------------------------------------------------------
    def _spend(self, rec: SpanRecord, now: float) -> SpanSpend:
        cost = rec.get_double(COST_KEY) or 0.0
        span = rec.span
        tokens = (rec.get_int("gen_ai.usage.input_tokens") or 0) + (rec.get_int("gen_ai.usage.output_tokens") or 0)
        ctx = Context(
            rec.get_str("workflow.id") or "",
            rec.get_str("workflow.name") or "",
            rec.get_str("owner.tenant") or "",
            rec.get_str("owner.feature") or "",
            rec.get_str(POLICY_KEY) or "",
            rec.get_int("retry.attempt") or 0,
        )
        end = span.end_time_unix_nano / 1e9 if span.end_time_unix_nano else now
        start_ms = span.start_time_unix_nano // 1_000_000 if span.start_time_unix_nano else int(now * 1000)
        return SpanSpend(ctx, spent_micro(cost), spent_tokens(tokens), 1, start_ms, end, rec.get_str(RESERVATION_KEY))

    def process(self, batch: TraceBatch) -> TraceBatch | None:
        raw = batch.raw
        if raw is not None and b"gen_ai." not in raw and COST_KEY.encode() not in raw:
            return batch  # no model call in this batch
        now = time.time()
        records, spends = [], []
        committed = self._committed
        for rec in batch.records:
            attrs = rec.attrs
            if any(m in attrs for m in self._markers):
                span_key = span_identity(rec.span)
                if span_key is not None:
                    if span_key in committed:
                        self.metrics.duplicate_spans.inc()
                        continue
                    committed[span_key] = True
                records.append(rec)
                spends.append(self._spend(rec, now))
        if not spends:
            return batch
        ops, wheres = self.engine.plan_commits(spends)
        store = self.engine.store
        if store.sync:
            results = store.commit_now(ops)
            verdicts, trips = self.engine.verdicts(spends, wheres, results)
            for _, key, _ in trips:
                store.trip_now(key, self.config.breaker.cooldown)
            self._stamp(records, verdicts)
            return batch
        task = asyncio.get_running_loop().create_task(self._commit_remote(batch, records, spends, ops, wheres))
        self._held[id(batch)] = batch
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)
        return None

    async def _commit_remote(self, batch, records, spends, ops, wheres) -> None:
        store = self.engine.store
        try:
            results = await store.commit(ops)
            verdicts, trips = self.engine.verdicts(spends, wheres, results)
            for _, key, _ in trips:
                await store.trip(key, self.config.breaker.cooldown)
        except StoreUnavailable as exc:
            self.metrics.store_errors.labels("commit", "unstamped").inc()
            self.log.warning(
                "budget store unreachable; %d spans forwarded without their spend counted: %s", len(spends), exc
            )
            verdicts = [SpanVerdict(self._policy_id(s.ctx), None) for s in spends]
        except Exception:
            # A bug here must not lose spans: forward the batch unstamped, as the pipeline does.
            self.log.exception("budget commit failed; forwarding the batch unstamped")
            self.context.metrics.processor_errors.labels(self.name).inc()
            verdicts = [SpanVerdict(None, None) for _ in spends]
        if self._held.pop(id(batch), None) is None:
            return  # released unstamped by shutdown meanwhile
        self._stamp(records, verdicts)
        self.emit(batch)

    def _policy_id(self, ctx: Context) -> str | None:
        policy = self.engine.policies.match(ctx.policy_id, ctx.workflow_name)
        return policy.id if policy else None

    @staticmethod
    def _stamp(records: list[SpanRecord], verdicts: list[SpanVerdict]) -> None:
        for rec, verdict in zip(records, verdicts, strict=True):
            if verdict.policy_id and not rec.has(POLICY_KEY):
                rec.set(POLICY_KEY, verdict.policy_id)
            if verdict.state:
                rec.set(STATE_KEY, verdict.state)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.store.start()

    def tick(self, now: float) -> None:
        self.engine.store.tick(now)
        self.engine.count_expired()

    def shutdown(self) -> None:
        held, self._held = self._held, {}
        for batch in held.values():
            self.emit(batch)  # unstamped rather than lost

    async def close(self) -> None:
        tasks = list(self._commits)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.engine.store.close()

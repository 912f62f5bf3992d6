"""The budget engine: answers checks and commits priced spans against one store."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from costctx.attribution.envelope_fields import register_check
from costctx.budget import counters as c
from costctx.budget.breaker import Breaker, breaker_keys
from costctx.budget.config import BudgetConfig, PolicyConfig, WindowLimits
from costctx.budget.decision import ALLOW, BLOCK, DEGRADE, TRIPPED, CheckOutcome, CheckPlan, Dim, fits, soft_reached
from costctx.budget.memory import MemoryStore
from costctx.budget.metrics import BudgetMetrics
from costctx.budget.policy import Context, Policies, SpanSpend, check_dims, commit_changes
from costctx.budget.store import RESERVATION_TAG_SEPARATOR, CommitOp, CommitResult, StoreUnavailable
from costctx.pricing.book import PriceBookHandle

if TYPE_CHECKING:
    from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

log = logging.getLogger("costctx.budget")

OK, SOFT, HARD = "ok", "soft", "hard"
# budget_pb2.Decision names; the module is imported by the check (the budget service), not at start-up
_DECISIONS = {ALLOW: "ALLOW", DEGRADE: "DEGRADE", BLOCK: "BLOCK", TRIPPED: "BLOCK"}


def build_store(config: BudgetConfig):
    if config.backend == "redis":
        from costctx.budget.redis_store import RedisStore

        return RedisStore(config.redis)
    return MemoryStore()


def context_of(envelope) -> Context:
    return Context(envelope.workflow_id, envelope.workflow_name, envelope.owner.tenant, envelope.owner.feature,
                   envelope.policy_id, envelope.retry_attempt)


@dataclass(slots=True)
class SpanVerdict:
    """What the processor stamps on a committed span."""

    policy_id: str | None
    state: str | None
    # The workflow's committed spend after this span (micro-USD), from the store's counter.
    workflow_micro: int | None = None


class BudgetEngine:
    def __init__(self, config: BudgetConfig, metrics: BudgetMetrics, price_book: PriceBookHandle | None = None,
                 store=None) -> None:
        self.config = config
        self.metrics = metrics
        # Estimates for checks that name a model and token counts; None: only the caller's estimate.
        self.price_book = price_book
        self.store = store if store is not None else build_store(config)
        self.policies = Policies(config)
        self.reservation_ttl_ms = int(config.reservation_ttl * 1000)
        self.breaker = Breaker(config.breaker, metrics)
        # The sidecar's shared context registry, if any (a check registers its envelope there).
        self.context_registry: Callable[[], Any] = lambda: None
        # (policy, tenant limits, feature limits) config objects -> the limits _state compares
        self._limits_cache: dict[tuple[int, int, int], tuple[tuple[str, float], ...]] = {}

    # -- estimates ------------------------------------------------------------------------
    def book_micro(self, model: str, input_tokens: int, output_tokens: int) -> int | None:
        book = self.price_book
        if book is None or not model or (input_tokens <= 0 and output_tokens <= 0):
            return None
        try:
            estimate = book.estimate(model, input_tokens, output_tokens)
        except Exception:  # a price-book problem must not fail the check
            log.exception("price book estimate failed for %s", model)
            return None
        if estimate is None:
            return None
        return -(-int(estimate.pico) // 1_000_000)  # pico -> micro, rounded up

    # -- the check ------------------------------------------------------------------------
    async def check(self, request: pb.CheckRequest) -> pb.CheckResponse:
        from costctx.proto_gen.costctx.v1 import budget_pb2 as pb
        ctx = context_of(request.envelope)
        registry = self.context_registry()
        if register_check(registry, request) and registry.shared:
            # Written before the answer: a call the caller makes after it (to another
            # service, whose sidecar looks the trace up) finds the context registered.
            await registry.try_flush()
        policy = self.policies.match(ctx.policy_id, ctx.workflow_name)
        response = pb.CheckResponse(model=request.model)
        if policy is None:
            response.decision, response.state = pb.ALLOW, pb.OK
            response.reason = "no budget policy applies"
            self.metrics.decisions.labels("", "allow").inc()
            return response
        response.policy_id = policy.id
        if policy.retry_max is not None and ctx.retry_attempt > policy.retry_max:
            response.decision, response.state = pb.BLOCK, pb.HARD
            response.dimension, response.unit = "workflow.retry_attempt", "attempts"
            response.spent_usd, response.limit_usd = float(ctx.retry_attempt), float(policy.retry_max)
            response.reason = f"retry ceiling: attempt {ctx.retry_attempt} over the limit of {policy.retry_max}"
            self.metrics.decisions.labels(policy.id, "block").inc()
            return response

        in_tok, out_tok = request.estimated_input_tokens, request.estimated_output_tokens
        full = c.usd_to_micro(request.estimated_cost_usd, round_up=True)
        booked = self.book_micro(request.model, in_tok, out_tok)
        if booked is not None:
            full = max(full, booked)
        cheaper = policy.downgrade.get(request.model, "")
        degraded = full
        if cheaper:
            booked_cheaper = self.book_micro(cheaper, in_tok, out_tok)
            if booked_cheaper is not None:
                degraded = min(full, booked_cheaper)
        dims = check_dims(policy, ctx, time.time(), self.config.workflow_ttl, full, degraded,
                          max(in_tok, 0) + max(out_tok, 0))
        plan = CheckPlan(dims, breaker_keys(ctx), reserve=not request.dry_run, has_degraded=bool(cheaper),
                         reservation_id=self._reservation_id(ctx.tenant),
                         reservation_ttl_ms=self.reservation_ttl_ms, tag=ctx.tenant,
                         binding=(ctx.workflow_id, ctx.tenant))
        try:
            outcome = await self.store.check(plan)
        except StoreUnavailable as exc:
            return self._store_down(policy, response, exc)
        self._fill(response, policy, plan, outcome, cheaper)
        self.metrics.decisions.labels(policy.id, pb.Decision.Name(response.decision).lower()).inc()
        if outcome.reserved:
            self.metrics.reservations.labels("reserved").inc()
        self.count_expired()
        return response

    def _reservation_id(self, tenant: str) -> str:
        """On a Redis Cluster the id names its tenant (the slot it lives in), so a release that
        carries only the id finds it: `<uuid>~<tenant>`."""
        rid = uuid.uuid4().hex
        if self.config.backend == "redis" and self.config.redis.cluster:
            return f"{rid}{RESERVATION_TAG_SEPARATOR}{tenant}"
        return rid

    def _store_down(self, policy: PolicyConfig, response: pb.CheckResponse, exc: Exception) -> pb.CheckResponse:
        from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

        fail_open = policy.on_store_error == "open"
        self.metrics.store_errors.labels("check", "fail_open" if fail_open else "fail_closed").inc()
        log.warning("budget store unreachable (%s); policy %s fails %s", exc, policy.id, policy.on_store_error)
        response.decision = pb.ALLOW if fail_open else pb.BLOCK
        response.state = pb.BUDGET_STATE_UNSPECIFIED
        response.reason = f"budget store unreachable; policy fails {policy.on_store_error}"
        self.metrics.decisions.labels(policy.id, "allow" if fail_open else "block").inc()
        return response

    def _fill(self, response: pb.CheckResponse, policy: PolicyConfig, plan: CheckPlan,
              outcome: CheckOutcome, cheaper: str) -> None:
        from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

        verdict = outcome.verdict
        response.decision = pb.Decision.Value(_DECISIONS[verdict])
        if verdict == DEGRADE:
            response.model = cheaper
        dims, values = plan.dims, outcome.values
        for dim, (committed, reserved) in zip(dims, values, strict=True):
            response.usages.add(dimension=dim.name, unit=dim.unit, spent=committed / dim.scale,
                                reserved=reserved / dim.scale, limit=dim.limit / dim.scale,
                                remaining=max(dim.limit - committed - reserved, 0) / dim.scale)
        deciding = self._deciding(dims, values, verdict, outcome.degraded)
        if deciding is not None:
            usage = response.usages[deciding]
            response.dimension, response.unit = usage.dimension, usage.unit
            response.spent_usd, response.limit_usd, response.remaining_usd = usage.spent, usage.limit, usage.remaining
        if verdict == TRIPPED:
            response.state = pb.TRIPPED
            response.reason = "circuit breaker open for this tenant or workflow (cooling down)"
        elif verdict == BLOCK and response.dimension == "workflow.in_flight":
            response.state = pb.HARD
            response.reason = (f"workflow.in_flight: {int(response.limit_usd)} call(s) of this workflow already "
                               "in flight; retry when one completes")
        elif verdict == BLOCK:
            response.state = pb.HARD
            response.reason = f"{response.dimension}: this call would pass the hard limit"
        elif verdict == DEGRADE:
            response.state = pb.SOFT
            response.reason = f"{response.dimension}: soft threshold reached; use {cheaper}"
        elif soft_reached(dims, values):
            response.state = pb.SOFT
            response.reason = f"{response.dimension}: soft threshold reached; no cheaper model configured"
        else:
            response.state = pb.OK
            response.reason = "within budget" if dims else "no limit applies to this envelope"
        if outcome.reserved:
            response.reservation_id = plan.reservation_id
            response.reservation_ttl_ms = plan.reservation_ttl_ms
            amount = next((d.degraded if outcome.degraded else d.full for d in dims if d.unit == "usd"), 0)
            response.reserved_cost_usd = c.micro_to_usd(amount)

    @staticmethod
    def _deciding(dims: list[Dim], values, verdict: str, degraded: bool) -> int | None:
        if not dims:
            return None
        if verdict == BLOCK:
            failing = fits(dims, values, False)
            if failing >= 0:
                return failing
        best, best_fraction = 0, -1.0
        for i, (dim, (committed, reserved)) in enumerate(zip(dims, values, strict=True)):
            if dim.unit == "calls":
                continue  # a concurrency ceiling decides only when it blocks
            amount = 0 if dim.elapsed else (dim.degraded if degraded else dim.full)
            fraction = (committed + reserved + amount) / dim.limit if dim.limit else 0.0
            if fraction > best_fraction:
                best, best_fraction = i, fraction
        return best

    async def release(self, reservation_id: str) -> bool:
        if not reservation_id:
            return False  # nothing was reserved (an empty id would name no reservation)
        try:
            released = await self.store.release(reservation_id)
        except StoreUnavailable as exc:
            self.metrics.store_errors.labels("release", "failed").inc()
            log.warning("budget store unreachable on release: %s", exc)
            return False
        if released:
            self.metrics.reservations.labels("released").inc()
        return released

    def count_expired(self) -> None:
        expired = self.store.expired_total
        if expired:
            self.metrics.reservations.labels("expired").inc(expired)
            self.store.expired_total = 0

    # -- commits from priced spans ----------------------------------------------------------
    def plan_commits(self, spends: list[SpanSpend], once_prefix: str = "c|"
                     ) -> tuple[list[CommitOp], list[dict[str, int]]]:
        """`once_prefix`: the span's commit-once key (a settlement commit uses its own)."""
        ops, wheres = [], []
        once_ttl_ms = int(self.config.commit_once_ttl * 1000)
        for spend in spends:
            changes, where = commit_changes(spend, self.config.workflow_ttl, self.breaker.velocity_window)
            once_key = once_prefix + spend.span_key.hex() if spend.span_key and once_ttl_ms else None
            tag = spend.tag if spend.tag is not None else spend.ctx.tenant
            ops.append(CommitOp(spend.reservation_id, changes, once_key, once_ttl_ms, tag,
                                (spend.ctx.workflow_id, spend.ctx.tenant)))
            wheres.append(where)
        return ops, wheres

    def verdicts(self, spends: list[SpanSpend], wheres: list[dict[str, int]],
                 results: list[CommitResult]) -> tuple[list[SpanVerdict], list[tuple[str, str, str]]]:
        """The state after each span, and the breaker trips it causes: (kind, key, tenant)."""
        now = time.time()
        out, trips = [], []
        committed = sum(1 for r in results if r.released)
        if committed:
            self.metrics.reservations.labels("committed").inc(committed)
        duplicates = sum(1 for r in results if r.duplicate)
        if duplicates:
            self.metrics.duplicate_spans.inc(duplicates)
        self.metrics.committed_spans.inc(len(results) - duplicates)
        refused = sum(1 for r in results if r.refused)
        if refused:
            # A span naming a reservation made for another workflow or tenant (a spoof, or a
            # client putting one call's id on another's span): its spend counts, the
            # reservation stays for its own span.
            self.metrics.reservations.labels("refused").inc(refused)
            log.warning("%d span(s) named a reservation made for another workflow or tenant; left reserved", refused)
        states: dict[tuple[str, str], int] = {}  # counted once per batch, not per span
        for spend, where, result in zip(spends, wheres, results, strict=True):
            if not result.duplicate:
                observed = self.breaker.observe(spend, where, result, now)
                trips += [(kind, key, spend.ctx.tenant) for kind, key, _ in observed]
            index = where.get("workflow.cost_usd")
            workflow_micro = result.values[index] if index is not None else None
            policy = self.policies.match(spend.ctx.policy_id, spend.ctx.workflow_name)
            if policy is None:
                out.append(SpanVerdict(None, None, workflow_micro))
                continue
            state = self.state_of(policy, spend.ctx, where, result.values, now)
            if not result.duplicate:  # a resent span was counted the first time
                states[(policy.id, state)] = states.get((policy.id, state), 0) + 1
            out.append(SpanVerdict(policy.id, state, workflow_micro))
        for (policy_id, state), spans in states.items():
            self.metrics.span_states.labels(policy_id, state).inc(spans)
        return out, trips

    def count_commit(self, outcomes: list[tuple[bool, bool]], spans: int) -> None:
        """The metrics of a batch's commit: `outcomes` (released, refused) per reservation named."""
        released = sum(1 for r, _ in outcomes if r)
        if released:
            self.metrics.reservations.labels("committed").inc(released)
        self.metrics.committed_spans.inc(spans)
        refused = sum(1 for _, r in outcomes if r)
        if refused:
            self.metrics.reservations.labels("refused").inc(refused)
            log.warning("%d span(s) named a reservation made for another workflow or tenant; left reserved", refused)

    def count_states(self, states: dict[tuple[str, str], int]) -> None:
        for (policy_id, state), spans in states.items():
            self.metrics.span_states.labels(policy_id, state).inc(spans)

    def _limits_of(self, policy: PolicyConfig, tenant: WindowLimits, feature: WindowLimits
                   ) -> tuple[tuple[str, float], ...]:
        """(counter name, limit x unit scale) of every limit set: the same few combinations of
        config objects for every span, so built once each (the config lives as long as the engine)."""
        cache_key = (id(policy), id(tenant), id(feature))
        found = self._limits_cache.get(cache_key)
        if found is None:
            limits = policy.workflow
            checks: list[tuple[str, float | None, float]] = [
                ("workflow.cost_usd", limits.cost_usd, c.MICRO),
                ("workflow.tokens", limits.tokens, 1),
                ("workflow.steps", limits.steps, 1),
            ]
            for label, windows in (("tenant", tenant), ("feature", feature)):
                for window in c.WINDOWS:
                    checks.append((f"{label}.{window}_usd", getattr(windows, f"{window}_usd"), c.MICRO))
            found = tuple((name, limit * scale) for name, limit, scale in checks if limit is not None)
            self._limits_cache[cache_key] = found
        return found

    def state_of(self, policy: PolicyConfig, ctx: Context, where: dict[str, int], values: list[int],
                 now: float) -> str:
        """The budget.state after a span: `values` the counters after it, in its changes' order."""
        if self.breaker.open_here(ctx, now):
            return "tripped"
        worst = 0.0
        limits = policy.workflow
        for name, scaled_limit in self._limits_of(policy, policy.tenant_limits(ctx.tenant),
                                                  policy.feature_limits(ctx.feature)):
            if name in where:
                worst = max(worst, values[where[name]] / scaled_limit)
        if limits.wall_clock is not None and "workflow.start" in where:
            worst = max(worst, (now * 1000 - values[where["workflow.start"]]) / (limits.wall_clock * 1000))
        if worst >= policy.hard_threshold:
            return HARD
        if worst >= policy.soft_threshold:
            return SOFT
        return OK

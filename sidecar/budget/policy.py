"""Turn a policy, an envelope and an estimate into the dimensions a check evaluates,
and a priced span into the counter changes it commits."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sidecar.budget import counters as c
from sidecar.budget.config import BudgetConfig, PolicyConfig, WindowLimits
from sidecar.budget.decision import Dim


@dataclass(slots=True)
class Context:
    """The envelope fields a budget reads (from a check request or a span)."""

    workflow_id: str = ""
    workflow_name: str = ""
    tenant: str = ""
    feature: str = ""
    policy_id: str = ""
    retry_attempt: int = 0


class Policies:
    def __init__(self, config: BudgetConfig) -> None:
        self.by_id = {p.id: p for p in config.policies}
        self.by_name = {name: p for p in config.policies for name in p.workflow_names}
        self.default = self.by_id.get(config.default_policy) if config.default_policy else None

    def match(self, policy_id: str, workflow_name: str) -> PolicyConfig | None:
        """`policy.id` first, then `workflow.name`, then the default policy."""
        return self.by_id.get(policy_id) or self.by_name.get(workflow_name) or self.default


def _limit(value: float, threshold: float) -> int:
    return math.floor(value * threshold)


def _usd_dim(name: str, key: str, usd_limit: float, policy: PolicyConfig, ttl_ms: int,
             full: int, degraded: int) -> Dim:
    limit = c.usd_to_micro(usd_limit)
    return Dim(name, "usd", key, c.USD, limit, _limit(limit, policy.hard_threshold),
               _limit(limit, policy.soft_threshold), full, degraded, ttl_ms, scale=c.MICRO)


def _window_dims(kind: str, label: str, owner: str, limits: WindowLimits, policy: PolicyConfig,
                 at: float, full: int, degraded: int) -> list[Dim]:
    dims = []
    for window in c.WINDOWS:
        usd = getattr(limits, f"{window}_usd")
        if usd is not None and owner:
            key = c.window_key(kind, owner, window, at)
            dims.append(_usd_dim(f"{label}.{window}_usd", key, usd, policy, c.WINDOW_TTL_S[window] * 1000,
                                 full, degraded))
    return dims


def check_dims(policy: PolicyConfig, ctx: Context, at: float, workflow_ttl_s: float,
               cost_full: int, cost_degraded: int, tokens: int) -> list[Dim]:
    dims: list[Dim] = []
    limits = policy.workflow
    if ctx.workflow_id:
        key = c.workflow_key(ctx.workflow_id)
        ttl = int(workflow_ttl_s * 1000)
        soft, hard = policy.soft_threshold, policy.hard_threshold
        if limits.cost_usd is not None:
            dims.append(_usd_dim("workflow.cost_usd", key, limits.cost_usd, policy, ttl, cost_full, cost_degraded))
        if limits.tokens is not None:
            dims.append(Dim("workflow.tokens", "tokens", key, c.TOKENS, limits.tokens,
                            _limit(limits.tokens, hard), _limit(limits.tokens, soft), tokens, tokens, ttl))
        if limits.steps is not None:
            dims.append(Dim("workflow.steps", "steps", key, c.STEPS, limits.steps,
                            _limit(limits.steps, hard), _limit(limits.steps, soft), 1, 1, ttl))
        if limits.wall_clock is not None:
            ms = int(limits.wall_clock * 1000)
            dims.append(Dim("workflow.wall_clock_s", "seconds", key, c.START, ms, _limit(ms, hard),
                            _limit(ms, soft), 0, 0, ttl, elapsed=True, scale=1000.0))
        if limits.max_in_flight is not None:
            # A concurrency ceiling, not a budget: no soft zone, no threshold scaling.
            n = limits.max_in_flight
            dims.append(Dim("workflow.in_flight", "calls", key, c.IN_FLIGHT, n, n, n + 1, 1, 1, ttl))
    dims += _window_dims("t", "tenant", ctx.tenant, policy.tenant_limits(ctx.tenant), policy, at, cost_full,
                         cost_degraded)
    dims += _window_dims("f", "feature", ctx.feature, policy.feature_limits(ctx.feature), policy, at, cost_full,
                         cost_degraded)
    return dims


@dataclass(slots=True)
class SpanSpend:
    """What one model-call span adds to the counters."""

    ctx: Context
    cost_micro: int
    tokens: int
    steps: int
    start_ms: int
    at: float                    # the span's end, epoch seconds: picks the windows
    reservation_id: str | None


def commit_changes(spend: SpanSpend, workflow_ttl_s: float, velocity_window_s: float | None
                   ) -> tuple[list[tuple[str, str, int, int]], dict[str, int]]:
    """-> (changes, index of each named value in the commit result)."""
    changes: list[tuple[str, str, int, int]] = []
    where: dict[str, int] = {}

    def add(name: str, key: str, field: str, amount: int, ttl_ms: int) -> None:
        where[name] = len(changes)
        changes.append((key, field, amount, ttl_ms))

    ctx = spend.ctx
    if ctx.workflow_id:
        key = c.workflow_key(ctx.workflow_id)
        ttl = int(workflow_ttl_s * 1000)
        add("workflow.cost_usd", key, c.USD, spend.cost_micro, ttl)
        add("workflow.tokens", key, c.TOKENS, spend.tokens, ttl)
        add("workflow.steps", key, c.STEPS, spend.steps, ttl)
        add("workflow.start", key, "=" + c.START, spend.start_ms, ttl)
    for kind, label, owner in (("t", "tenant", ctx.tenant), ("f", "feature", ctx.feature)):
        if owner:
            for window in c.WINDOWS:
                add(f"{label}.{window}_usd", c.window_key(kind, owner, window, spend.at), c.USD, spend.cost_micro,
                    c.WINDOW_TTL_S[window] * 1000)
    if velocity_window_s and ctx.tenant:
        bucket = int(spend.at // velocity_window_s)
        ttl = int(velocity_window_s * 3000)
        add("velocity.current", c.velocity_key(ctx.tenant, bucket), c.USD, spend.cost_micro, ttl)
        add("velocity.previous", c.velocity_key(ctx.tenant, bucket - 1), c.USD, 0, ttl)
    return changes, where

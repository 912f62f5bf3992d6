"""Turn a policy, an envelope and an estimate into the dimensions a check evaluates,
and a priced span into the counter changes it commits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

from costctx.budget import counters as c
from costctx.budget.config import BudgetConfig, PolicyConfig, WindowLimits
from costctx.budget.decision import Dim
from costctx.budget.store import SET_IF_ABSENT


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
    # trace id + span id: committed once across sidecars when the store is shared
    span_key: bytes | None = None
    # The tenant whose Redis Cluster slot the commit goes to, when not ctx.tenant (a settled
    # span commits only what it lacked, but its workflow lives in its tenant's slot).
    tag: str | None = None


# Counter names a span's commit reports, in the order of its changes (see _where below).
_WORKFLOW_NAMES = ("workflow.cost_usd", "workflow.tokens", "workflow.steps", "workflow.start")
_WINDOW_NAMES = {label: tuple(f"{label}.{window}_usd" for window in c.WINDOWS) for label in ("tenant", "feature")}
_WINDOW_TTLS_MS = tuple(c.WINDOW_TTL_S[window] * 1000 for window in c.WINDOWS)
_SET_START = SET_IF_ABSENT + c.START


@cache  # 16 shapes at most
def _where(workflow: bool, tenant: bool, feature: bool, velocity: bool) -> dict[str, int]:
    """The index of each named value in a commit's results: the same for every span of one
    shape, so built once per shape and shared (callers only read it)."""
    names: list[str] = []
    if workflow:
        names += _WORKFLOW_NAMES
    if tenant:
        names += _WINDOW_NAMES["tenant"]
    if feature:
        names += _WINDOW_NAMES["feature"]
    if velocity:
        names += ("velocity.current", "velocity.previous")
    return {name: i for i, name in enumerate(names)}


# The spans of one workflow, tenant or feature name the same keys: built once, not per span.
_workflow_key = lru_cache(maxsize=4096)(c.workflow_key)


@lru_cache(maxsize=4096)
def _window_keys_ttls(kind: str, owner: str, hour: int) -> tuple[tuple[str, int], ...]:
    """(key, TTL ms) of each window (hour, day, month) of `owner` at UTC `hour`."""
    return tuple(zip(c.window_keys(kind, owner, hour), _WINDOW_TTLS_MS, strict=True))


@lru_cache(maxsize=4096)
def _velocity_keys(tenant: str, bucket: int) -> tuple[str, str]:
    """The tenant's current and previous velocity bucket keys: the same for every span of the
    tenant within a bucket, so formatted once (each escapes the tenant)."""
    return c.velocity_key(tenant, bucket), c.velocity_key(tenant, bucket - 1)


def commit_changes(spend: SpanSpend, workflow_ttl_s: float, velocity_window_s: float | None
                   ) -> tuple[list[tuple[str, str, int, int]], dict[str, int]]:
    """-> (changes, index of each named value in the commit result; shared, read-only)."""
    ctx = spend.ctx
    cost = spend.cost_micro
    workflow_id, tenant, feature = ctx.workflow_id, ctx.tenant, ctx.feature
    if workflow_id:
        key = _workflow_key(workflow_id)
        ttl = int(workflow_ttl_s * 1000)
        changes = [(key, c.USD, cost, ttl), (key, c.TOKENS, spend.tokens, ttl), (key, c.STEPS, spend.steps, ttl),
                   (key, _SET_START, spend.start_ms, ttl)]
    else:
        changes = []
    if tenant or feature:
        hour = int(spend.at // 3600)
        usd = c.USD
        if tenant:
            (k1, t1), (k2, t2), (k3, t3) = _window_keys_ttls("t", tenant, hour)
            changes += ((k1, usd, cost, t1), (k2, usd, cost, t2), (k3, usd, cost, t3))
        if feature:
            (k1, t1), (k2, t2), (k3, t3) = _window_keys_ttls("f", feature, hour)
            changes += ((k1, usd, cost, t1), (k2, usd, cost, t2), (k3, usd, cost, t3))
    velocity = bool(velocity_window_s and tenant)
    if velocity:
        bucket = int(spend.at // velocity_window_s)
        ttl = int(velocity_window_s * 3000)
        current, previous = _velocity_keys(tenant, bucket)
        changes.append((current, c.USD, cost, ttl))
        changes.append((previous, c.USD, 0, ttl))
    return changes, _where(bool(workflow_id), bool(tenant), bool(feature), velocity)

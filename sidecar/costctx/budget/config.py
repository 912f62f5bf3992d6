"""The budget engine's settings: backend, reservations, breaker and policies (the `budget`
processor's config section; sidecar/costctx/processors/budget/config.py names it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from costctx.config.types import Duration, StrictModel


class WorkflowLimits(StrictModel):
    """Per workflow (`workflow.id`), over its whole life."""

    cost_usd: PositiveFloat | None = None
    tokens: PositiveInt | None = None      # input + output
    steps: PositiveInt | None = None       # model calls
    wall_clock: Duration | None = None     # from the workflow's first check or span
    # Calls admitted and not yet committed (no priced span yet). Only serializing the calls
    # bounds an overrun when estimates run low: with 1, at most one call's overrun.
    max_in_flight: PositiveInt | None = None


class WindowLimits(StrictModel):
    """Per tenant or per feature, per UTC calendar window."""

    hour_usd: PositiveFloat | None = None
    day_usd: PositiveFloat | None = None
    month_usd: PositiveFloat | None = None


class PolicyConfig(StrictModel):
    id: str = Field(min_length=1)
    # Envelopes without a `policy.id` get this policy when their `workflow.name` is listed.
    workflow_names: list[str] = Field(default_factory=list)
    workflow: WorkflowLimits = Field(default_factory=WorkflowLimits)
    retry_max: int | None = Field(default=None, ge=0)   # a `retry.attempt` above it is blocked
    # Ceilings per window for each tenant / feature; `tenants` / `features` replace them for
    # the ones named (e.g. a customer on a larger plan).
    tenant: WindowLimits = Field(default_factory=WindowLimits)
    feature: WindowLimits = Field(default_factory=WindowLimits)
    tenants: dict[str, WindowLimits] = Field(default_factory=dict)
    features: dict[str, WindowLimits] = Field(default_factory=dict)
    soft_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    hard_threshold: float = Field(default=1.0, gt=0.0, le=2.0)
    # model -> cheaper model, answered with DEGRADE at the soft threshold
    downgrade: dict[str, str] = Field(default_factory=dict)
    # When the shared store (Redis) cannot be reached: allow (open) or block (closed).
    on_store_error: Literal["open", "closed"] = "open"

    def tenant_limits(self, tenant: str) -> WindowLimits:
        return self.tenants.get(tenant, self.tenant)

    def feature_limits(self, feature: str) -> WindowLimits:
        return self.features.get(feature, self.feature)

    @model_validator(mode="after")
    def _soft_below_hard(self) -> PolicyConfig:
        if self.soft_threshold > self.hard_threshold:
            raise ValueError("soft_threshold must not exceed hard_threshold")
        return self


class BreakerConfig(StrictModel):
    # A tenant spending faster than this many dollars per `velocity_window` trips.
    tenant_usd_per_window: PositiveFloat | None = None
    velocity_window: Duration = 60.0
    # One workflow costing more than this multiple of the rolling median of its
    # `workflow.name` (over the last `median_window` workflows) trips.
    workflow_median_multiple: PositiveFloat | None = 5.0
    median_window: PositiveInt = 50
    min_samples: PositiveInt = 5
    # Only finished workflows make the median: a workflow is finished when its root span
    # (no parent) passes, or when it has had no spend for this long.
    workflow_idle: Duration = 300.0
    cooldown: Duration = 300.0


class RedisConfig(StrictModel):
    url: str = "redis://127.0.0.1:6379/0"
    # One hash tag, so every key of a deployment lands in one Redis Cluster slot. With
    # `cluster: true` the braces are dropped and each tenant's keys get their own hash tag.
    key_prefix: str = "{costctx}:budget:"
    timeout: Duration = 0.25
    # A Redis Cluster (`url` names any node): keys are hash-tagged per tenant, so one tenant's
    # workflow, tenant and reservation keys share a slot (each script stays atomic) and
    # tenants spread over the nodes.
    cluster: bool = False


class BudgetConfig(StrictModel):
    backend: Literal["memory", "redis"] = "memory"
    redis: RedisConfig = Field(default_factory=RedisConfig)
    # How long an ALLOW holds its estimate when no priced span replaces it.
    reservation_ttl: Duration = 30.0
    # Counters of a workflow not seen for this long are forgotten.
    workflow_ttl: Duration = 86400.0
    # With a shared store, a span's cost is committed once across every sidecar: its
    # (trace id, span id) is remembered this long (a key of ~100 bytes per priced span).
    # 0 turns it off.
    commit_once_ttl: Duration = 900.0
    # The policy for envelopes that match none by `policy.id` or `workflow.name`.
    default_policy: str | None = None
    # A span's cost above this is not believed (one span could block a tenant for the day):
    # counted, and recomputed from its tokens at the price book's rates, at most this.
    max_call_usd: PositiveFloat = 100.0
    # How far a span's own end time may move its commit (the windows and velocity bucket it
    # lands in) from the sidecar's clock: a span stamped days away still spends today.
    max_span_clock_skew: Duration = 300.0
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    policies: list[PolicyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_ids(self) -> BudgetConfig:
        ids = [p.id for p in self.policies]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate policy ids: {', '.join(duplicates)}")
        if self.default_policy is not None and self.default_policy not in ids:
            raise ValueError(f"default_policy {self.default_policy!r} is not one of the policies")
        if self.backend == "redis" and self.redis.cluster:
            # A feature's window spans tenants: its counter would sit in every tenant's slot
            # at once, which no atomic script can read. Per-tenant tags split it instead.
            with_features = [p.id for p in self.policies if p.features or any(
                getattr(p.feature, f"{w}_usd") is not None for w in ("hour", "day", "month"))]
            if with_features:
                raise ValueError("feature ceilings are not supported with redis.cluster (a feature spans tenants, "
                                 f"so its counter is cross-slot): policies {', '.join(with_features)}")
        return self

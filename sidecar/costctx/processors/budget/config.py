"""The `budget` processor's config section: the budget engine's settings, whose models live with
the engine (costctx/budget/config.py) because the engine, a domain library, reads them."""

from __future__ import annotations

from costctx.budget.config import (
    BreakerConfig,
    BudgetConfig,
    PolicyConfig,
    RedisConfig,
    WindowLimits,
    WorkflowLimits,
)

__all__ = ["BreakerConfig", "BudgetConfig", "PolicyConfig", "RedisConfig", "WindowLimits", "WorkflowLimits"]

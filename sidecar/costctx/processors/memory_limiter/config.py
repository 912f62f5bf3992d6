"""The `memory_limiter` processor's config section (the Collector's names and defaults)."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from costctx.config.types import Duration, StrictModel


class MemoryLimiterConfig(StrictModel):
    check_interval: Duration = 1.0
    limit_mib: PositiveInt
    spike_limit_mib: int | None = Field(default=None, ge=0)
    # What the refusal tells clients to wait before retrying.
    retry_after: Duration = 1.0

    @model_validator(mode="after")
    def _spike_below_limit(self) -> MemoryLimiterConfig:
        if self.spike_limit_mib is not None and self.spike_limit_mib >= self.limit_mib:
            raise ValueError("spike_limit_mib must be below limit_mib")
        if self.check_interval <= 0:
            raise ValueError("check_interval must be positive")
        return self

    @property
    def soft_limit_mib(self) -> int:
        spike = self.spike_limit_mib if self.spike_limit_mib is not None else self.limit_mib // 5
        return self.limit_mib - spike

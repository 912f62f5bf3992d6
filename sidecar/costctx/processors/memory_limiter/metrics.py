"""The memory limiter's metrics, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costctx.telemetry.metrics import ComponentMetrics


@dataclass(frozen=True)
class MemoryLimiterMetrics:
    rss: Any
    refusing: Any
    refused: Any  # .labels(signal)
    soft_limit: Any


def memory_limiter_metrics(m: ComponentMetrics) -> MemoryLimiterMetrics:
    return MemoryLimiterMetrics(
        rss=m.gauge("costctx_memory_limiter_rss_bytes", "Process RSS at the last sample."),
        refusing=m.gauge("costctx_memory_limiter_refusing", "1 while new data is refused for memory."),
        refused=m.counter(
            "costctx_memory_limiter_refused_requests",
            "Requests refused because memory was above the soft limit.",
            ["signal"],
        ),
        soft_limit=m.gauge("costctx_memory_limiter_soft_limit_bytes", "The soft limit."),
    )

"""The `limits` processor's counters, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costctx.telemetry.metrics import ComponentMetrics


@dataclass(frozen=True)
class LimitsMetrics:
    dropped: Any
    truncated: Any


def limits_metrics(m: ComponentMetrics) -> LimitsMetrics:
    return LimitsMetrics(
        dropped=m.counter("costctx_limits_dropped_attributes", "Span attributes dropped over max_attributes_per_span."),
        truncated=m.counter(
            "costctx_limits_truncated_values", "Attribute values truncated to max_attribute_value_length."
        ),
    )

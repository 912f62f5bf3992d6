"""The `limits` processor's config section: what one span may carry."""

from __future__ import annotations

from pydantic import PositiveInt

from costctx.config.types import StrictModel


class LimitsConfig(StrictModel):
    # The OpenTelemetry SDK's default attribute count limit.
    max_attributes_per_span: PositiveInt = 128
    # Generous enough for prompt and completion content; bounds a runaway value.
    max_attribute_value_length: PositiveInt = 64 * 1024

"""The `envelope` processor's config section: required fields, spend dimensions, readiness."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator, model_validator

from costctx.config.types import Duration, StrictModel
from costctx.envelope import ENVELOPE
from costctx.survival.recorder import DEFAULT_READINESS_WINDOW, DEFAULT_SPEND_DIMENSIONS


class ReadinessConfig(StrictModel):
    """Verdict per workflow.name: pass when every check holds on at least `pass` of its LLM
    spans after repair, conditional at `conditional` or more, fail below; over the spans of
    the last `window` (0: since start)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    pass_: float = Field(default=ENVELOPE.readiness_thresholds["pass"], alias="pass", gt=0, le=1)
    conditional: float = Field(default=ENVELOPE.readiness_thresholds["conditional"], gt=0, le=1)
    window: Duration = DEFAULT_READINESS_WINDOW

    @model_validator(mode="after")
    def _ordered(self) -> ReadinessConfig:
        if self.conditional > self.pass_:
            raise ValueError("conditional must not be above pass")
        return self


class EnvelopeConfig(StrictModel):
    # Which context fields are required; the contract's defaults unless configured.
    required_fields: list[str] = Field(default_factory=lambda: list(ENVELOPE.default_required))
    # Record field-survival outcomes (turn off only to measure the cost of counting).
    record_outcomes: bool = True
    # Spend (cost.usd) is broken down by these context fields (a missing value is `unknown`).
    spend_dimensions: list[str] = Field(default_factory=lambda: list(DEFAULT_SPEND_DIMENSIONS), min_length=1)
    readiness: ReadinessConfig = Field(default_factory=ReadinessConfig)

    @field_validator("required_fields", "spend_dimensions")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in ENVELOPE.context_keys]
        if unknown:
            raise ValueError(f"not context fields of the envelope: {', '.join(unknown)}")
        return value

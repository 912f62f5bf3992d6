"""The `inherit` processor's config section: what waits for an ancestor, cache and hold bounds."""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator

from costctx.attribution.config import RegistryConfig
from costctx.config.types import Duration, StrictModel
from costctx.envelope import ENVELOPE

MiB = 1024 * 1024


class CacheConfig(StrictModel):
    # Spans remembered as possible ancestors: about 400 bytes each (ids, a few values that
    # children share, the cache's own links), so 20 MB; 5 s of history at 10k spans/s.
    max_entries: PositiveInt = 50_000
    # Traces remembered for the trace-level fallback.
    max_traces: PositiveInt = 25_000
    # An ancestor is forgotten this long after it was seen, even when there is room.
    ttl: Duration = 300.0


class HoldConfig(StrictModel):
    # Past either bound the oldest traces are released as they are (counted, never dropped).
    max_spans: PositiveInt = 20_000
    max_bytes: PositiveInt = 32 * MiB


def _check_fields(value: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"not {what}: {', '.join(unknown)}")
    return value


class InheritConfig(StrictModel):
    # How long a span waits for an ancestor that has not arrived (the Collector's
    # groupbytrace default). Counted from the first held span of the trace.
    wait_duration: Duration = 1.0
    # A span missing one of these (inheritable) fields waits for its ancestors.
    required_fields: list[str] = Field(default_factory=lambda: list(ENVELOPE.default_required))
    # When no ancestor has a field, take it from another span of the same trace.
    trace_fallback: bool = True
    trace_fallback_fields: list[str] = Field(default_factory=lambda: ["workflow.id"])
    cache: CacheConfig = Field(default_factory=CacheConfig)
    hold: HoldConfig = Field(default_factory=HoldConfig)
    # The context registry shared by every sidecar (costctx/attribution/registry.py).
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    @field_validator("required_fields")
    @classmethod
    def _known_required(cls, value: list[str]) -> list[str]:
        return _check_fields(value, ENVELOPE.context_keys, "context fields of the envelope")

    @field_validator("trace_fallback_fields")
    @classmethod
    def _known_fallback(cls, value: list[str]) -> list[str]:
        return _check_fields(value, ENVELOPE.inheritable, "inheritable context fields")

"""The `price` processor's config section: price sources (layered, with their periods), aliases,
token modes, running-total and dedupe bounds, the price history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, field_validator, model_validator

from costctx.config.types import Duration, StrictModel
from costctx.pricing.archive import DEFAULT_MAX_VERSIONS, PriceArchive
from costctx.pricing.book import PriceBook
from costctx.pricing.calc import INCLUSIVE
from costctx.pricing.sources import PriceSources, SourceSpec
from costctx.pricing.table import parse_instant

TokenMode = Literal["inclusive", "additive"]


class PriceSourceConfig(StrictModel):
    type: Literal["builtin", "litellm", "overrides"]
    path: str | None = None
    name: str | None = None
    version: str | None = None
    # A LiteLLM snapshot carries no dates: the period its prices were in effect (UTC).
    effective_from: str | None = None
    effective_until: str | None = None

    @model_validator(mode="after")
    def _path_matches_type(self) -> PriceSourceConfig:
        if self.type == "builtin" and self.path:
            raise ValueError("the builtin source is shipped in the package and takes no path")
        if self.type != "builtin" and not self.path:
            raise ValueError(f"a {self.type} source needs a path")
        if (self.effective_from or self.effective_until) and self.type != "litellm":
            raise ValueError("effective_from/effective_until apply to litellm snapshots; YAML rows carry "
                             "their own from/until")
        start, end = self.period()
        if start is not None and end is not None and end <= start:
            raise ValueError("effective_until must be after effective_from")
        return self

    def period(self) -> tuple[int | None, int | None]:
        start = parse_instant(self.effective_from, "effective_from") if self.effective_from else None
        end = parse_instant(self.effective_until, "effective_until") if self.effective_until else None
        return start, end


class PriceHistoryConfig(StrictModel):
    # Where every price-table version priced with is kept (survives restarts); memory only if unset.
    directory: str | None = None
    max_versions: PositiveInt = DEFAULT_MAX_VERSIONS


class PriceConfig(StrictModel):
    # Layered, later wins. A bare string is a type with no options: `- builtin`.
    sources: list[PriceSourceConfig] = Field(default_factory=lambda: [PriceSourceConfig(type="builtin")])
    # Span model name -> table model name (applied after exact, prefix and snapshot matching).
    aliases: dict[str, str] = Field(default_factory=dict)
    # Provider -> how its spans count cache tokens. `anthropic` is additive unless set here.
    cache_token_modes: dict[str, TokenMode] = Field(default_factory=dict)
    default_cache_token_mode: TokenMode = INCLUSIVE
    # How often price files are checked for changes (stat, then hash).
    reload_interval: Duration = 5.0
    # Workflow running totals: how many workflows, and how long after their last priced span.
    spend_table_size: PositiveInt = 100_000
    spend_ttl: Duration = 6 * 3600.0
    # A span seen again within this window (same trace and span id: a client resending a
    # batch) is priced and stamped again but not added to the running total twice. 0: off.
    dedupe_window: Duration = 300.0
    dedupe_size: NonNegativeInt = 50_000
    # A reported cost differing from the computed one by more than this fraction is drift.
    drift_tolerance: NonNegativeFloat = 0.01
    # Distinct model label values on the miss / drift metrics before `other`.
    max_model_labels: PositiveInt = 100
    # A span is priced at the price in effect at its start time when that is this close to the
    # sidecar's clock (either way); further off, at the price in effect now (counted), so a
    # forged timestamp cannot pick a cheaper period.
    start_time_tolerance: Duration = 3600.0
    history: PriceHistoryConfig = Field(default_factory=PriceHistoryConfig)

    @field_validator("sources", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"type": v} if isinstance(v, str) else v for v in value]
        return value


def source_specs(config: PriceConfig) -> list[SourceSpec]:
    return [SourceSpec(s.type, s.path, s.name, s.version, *s.period()) for s in config.sources]


def build_archive(config: PriceConfig) -> PriceArchive:
    return PriceArchive(config.history.directory, config.history.max_versions)


def build_book(config: PriceConfig, sources: PriceSources) -> PriceBook:
    return PriceBook(sources.tables(), config.aliases, config.cache_token_modes, config.default_cache_token_mode)

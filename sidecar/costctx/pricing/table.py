"""One price table: model name -> rates, plus the identity that `cost.price_source` names."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from costctx.pricing.money import rate_from_per_million


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Rates in pico-USD per token. Cache and reasoning rates already fall back to input/output."""

    input: int
    output: int
    cache_read: int
    cache_creation: int
    reasoning: int
    provider: str | None = None

    @classmethod
    def build(
        cls,
        input: int,
        output: int,
        cache_read: int | None = None,
        cache_creation: int | None = None,
        reasoning: int | None = None,
        provider: str | None = None,
    ) -> ModelPrice:
        return cls(
            input=input,
            output=output,
            cache_read=input if cache_read is None else cache_read,
            cache_creation=input if cache_creation is None else cache_creation,
            reasoning=output if reasoning is None else reasoning,
            provider=provider,
        )


RATE_KEYS = ("input", "output", "cache_read", "cache_creation", "reasoning")


def price_from_per_million(entry: Mapping[str, object], provider: str | None) -> ModelPrice:
    """A YAML row {input: 2.5, output: 10, cache_read: 1.25} (USD per million tokens)."""
    if not isinstance(entry, Mapping):
        raise ValueError("a model's prices must be a mapping like {input: 2.5, output: 10}")
    unknown = set(entry) - set(RATE_KEYS) - {"provider"}
    if unknown:
        raise ValueError(f"unknown price keys {sorted(unknown)} (known: {', '.join(RATE_KEYS)})")
    for required in ("input", "output"):
        if entry.get(required) is None:  # `input:` with no value is missing too
            raise ValueError(f"missing '{required}' price")
    rates = {k: rate_from_per_million(entry[k]) for k in RATE_KEYS if entry.get(k) is not None}
    row_provider = entry.get("provider")
    return ModelPrice.build(**rates, provider=str(row_provider) if row_provider else provider)


def content_digest(data: bytes) -> str:
    """First 8 hex digits of sha256: enough to tell two versions of a price file apart."""
    return hashlib.sha256(data).hexdigest()[:8]


@dataclass(frozen=True)
class PriceTable:
    """A loaded price source: `name@version#digest` is written on every span it prices."""

    name: str
    version: str | None
    digest: str
    models: Mapping[str, ModelPrice]
    aliases: Mapping[str, str] = field(default_factory=dict)
    path: str | None = None

    @property
    def source_id(self) -> str:
        version = f"@{self.version}" if self.version else ""
        return f"{self.name}{version}#{self.digest}"

    def get(self, model: str) -> ModelPrice | None:
        return self.models.get(model)

"""One price table: model name -> rates, plus the identity that `cost.price_source` names."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

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
    # Per-modality input rates (GenAI's pending `gen_ai.usage.{image,audio}.input_tokens`);
    # default to the input rate, so a table without them prices those tokens as text.
    input_image: int = 0
    input_audio: int = 0

    @classmethod
    def build(
        cls,
        input: int,
        output: int,
        cache_read: int | None = None,
        cache_creation: int | None = None,
        reasoning: int | None = None,
        provider: str | None = None,
        input_image: int | None = None,
        input_audio: int | None = None,
    ) -> ModelPrice:
        return cls(
            input=input,
            output=output,
            cache_read=input if cache_read is None else cache_read,
            cache_creation=input if cache_creation is None else cache_creation,
            reasoning=output if reasoning is None else reasoning,
            provider=provider,
            input_image=input if input_image is None else input_image,
            input_audio=input if input_audio is None else input_audio,
        )


RATE_KEYS = ("input", "output", "cache_read", "cache_creation", "reasoning", "input_image", "input_audio")
PERIOD_KEYS = ("from", "until")
NS_PER_SECOND = 1_000_000_000
# Pass as the instant to price with undated rows only: re-pricing a span whose recorded
# price source names no period (it was priced by an undated row).
UNDATED = -(1 << 80)


@dataclass(frozen=True, slots=True)
class DatedPrice:
    """A price in effect from `valid_from` (inclusive) until `valid_until` (exclusive), both
    UTC unix nanoseconds; None is an open end. `entry_id` names it in `cost.price_source`."""

    price: ModelPrice
    valid_from: int | None
    valid_until: int | None
    entry_id: str

    def in_effect(self, at_ns: int) -> bool:
        return (self.valid_from is None or at_ns >= self.valid_from) and (
            self.valid_until is None or at_ns < self.valid_until
        )


def parse_instant(value: object, where: str) -> int:
    """A UTC date or date-time (YAML date, datetime or ISO text; `Z` allowed) -> unix ns."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an ISO date or date-time (UTC)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        raise ValueError(f"{where}: expected a date like 2026-12-01 or 2026-12-01T00:00Z, got {value!r}")
    return int(moment.timestamp()) * NS_PER_SECOND + moment.microsecond * 1000


def format_instant(ns: int) -> str:
    """The short UTC text of an instant: the date alone at midnight, else minutes (`Z`)."""
    moment = datetime.fromtimestamp(ns / NS_PER_SECOND, tz=UTC)
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    if moment.second or moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def period_id(model: str, valid_from: int | None, valid_until: int | None) -> str:
    """`gpt-4o@2024-10-02..` / `gpt-4o@..2024-10-02` / `gpt-4o@2024-05-13..2024-10-02`."""
    start = format_instant(valid_from) if valid_from is not None else ""
    end = format_instant(valid_until) if valid_until is not None else ""
    return f"{model}@{start}..{end}"


def dated_prices(model: str, entries: list[tuple[ModelPrice, int | None, int | None]],
                 where: str) -> tuple[DatedPrice, ...]:
    """Check that a model's periods do not overlap, and order them by start."""
    ordered = sorted(entries, key=lambda e: -1 if e[1] is None else e[1])
    result: list[DatedPrice] = []
    for price, start, end in ordered:
        if start is not None and end is not None and end <= start:
            raise ValueError(f"{where}: 'until' must be after 'from'")
        if result:
            before = result[-1]
            if before.valid_until is None or start is None or start < before.valid_until:
                raise ValueError(f"{where}: price periods overlap ({before.entry_id} and "
                                 f"{period_id(model, start, end)})")
        result.append(DatedPrice(price, start, end, period_id(model, start, end)))
    return tuple(result)


def price_from_per_million(entry: Mapping[str, object], provider: str | None) -> ModelPrice:
    """A YAML row {input: 2.5, output: 10, cache_read: 1.25} (USD per million tokens)."""
    if not isinstance(entry, Mapping):
        raise ValueError("a model's prices must be a mapping like {input: 2.5, output: 10}")
    unknown = set(entry) - set(RATE_KEYS) - {"provider"} - set(PERIOD_KEYS)
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


def full_digest(data: bytes) -> str:
    """The whole sha256: what the price archive stores a version under."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PriceTable:
    """A loaded price source: `name@version#digest` is written on every span it prices."""

    name: str
    version: str | None
    digest: str
    models: Mapping[str, ModelPrice]
    aliases: Mapping[str, str] = field(default_factory=dict)
    path: str | None = None
    # Rows with effective dates: model -> its periods, ordered, never overlapping. A model may
    # have both: the undated row (in `models`) applies when no period covers the instant.
    dated: Mapping[str, tuple[DatedPrice, ...]] = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        version = f"@{self.version}" if self.version else ""
        return f"{self.name}{version}#{self.digest}"

    def get(self, model: str) -> ModelPrice | None:
        return self.models.get(model)

    def has(self, model: str) -> bool:
        return model in self.models or model in self.dated

    def at(self, model: str, at_ns: int | None) -> tuple[ModelPrice, str | None] | None:
        """The row in effect at `at_ns` and the id of its period (None for an undated row);
        None when the table has no row for the model in effect then."""
        periods = self.dated.get(model)
        if periods is not None and at_ns != UNDATED:
            if at_ns is None:
                at_ns = time.time_ns()
            for period in periods:
                if period.in_effect(at_ns):
                    return period.price, period.entry_id
        undated = self.models.get(model)
        if undated is not None:
            return undated, None
        return None

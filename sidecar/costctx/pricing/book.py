"""The layered price book: several price tables, later ones winning, and one lookup API.

Shared through the component host as `host.price_book` (a `PriceBookHandle`, which always
points at the current book, across reloads). The budget engine uses:

    handle = host.price_book
    est = handle.estimate("gpt-4o", input_tokens=1200, output_tokens=800)
    if est is not None:
        est.pico      # exact cost in pico-USD (int, 10^-12 dollars)
        est.usd       # the same as a float, for display
        est.source    # e.g. "builtin@2026-11-01#3f2a9c1d", or with the dated entry that
                      # priced it: "builtin@2026-11-01#3f2a9c1d/o3@2025-06-10.."

Prices may have effective dates: `at` (UTC unix ns, the span's start time once the caller
has checked it against its own clock) picks the period in effect; None means now.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from costctx.pricing.calc import ADDITIVE, INCLUSIVE, Cost, Usage, price_usage
from costctx.pricing.money import to_usd_float
from costctx.pricing.resolve import candidates
from costctx.pricing.sources import PriceSources, SourceSpec
from costctx.pricing.table import ModelPrice, PriceTable
from costctx.pricing.yaml_table import load_builtin

# Providers whose instrumentations report cache tokens beside input, not inside it.
DEFAULT_ADDITIVE_PROVIDERS = ("anthropic",)
RESOLVED_CACHE_SIZE = 4096
# The open ends of the instants a rate holds over (`PriceBook.rate_at`): past any span's time.
EARLIEST, LATEST = -(1 << 100), 1 << 100


@dataclass(frozen=True, slots=True)
class Resolution:
    model: str          # the span's model name that matched (response or request model)
    key: str            # the table row that priced it
    how: str            # exact / provider prefix / dated snapshot / alias ...
    table: PriceTable
    price: ModelPrice
    entry: str | None = None   # the dated period that priced it (None: the undated row)

    @property
    def source(self) -> str:
        """What `cost.price_source` records: the table version, and the period when dated."""
        if self.entry is None:
            return self.table.source_id
        return f"{self.table.source_id}/{self.entry}"


Match = tuple[str, str, str, PriceTable]  # (span model, table key, how, table)


@dataclass(slots=True)
class Estimate:
    pico: int
    source: str
    cost: Cost
    resolution: Resolution

    @property
    def usd(self) -> float:
        return to_usd_float(self.pico)


class PriceBook:
    """Immutable once built; a reload builds a new book and swaps it in the handle."""

    def __init__(
        self,
        tables: Sequence[PriceTable],
        aliases: Mapping[str, str] | None = None,
        token_modes: Mapping[str, str] | None = None,
        default_mode: str = INCLUSIVE,
    ) -> None:
        self.tables = tuple(tables)
        merged: dict[str, str] = {}
        for table in self.tables:
            merged.update(table.aliases)
        merged.update({k.lower(): v.lower() for k, v in (aliases or {}).items()})
        self.aliases = merged
        modes = {p: ADDITIVE for p in DEFAULT_ADDITIVE_PROVIDERS}
        modes.update({k.lower(): v for k, v in (token_modes or {}).items()})
        self.token_modes = modes
        self.default_mode = default_mode
        # Spans repeat a handful of model names: resolve each combination once per book.
        # A plain dict (C-speed lookups), emptied when full: bounded without LRU bookkeeping.
        self._matches: dict[tuple, tuple[Match, ...]] = {}
        # Names whose every candidate row is undated price the same whatever the time: their
        # resolution and cache-token mode (or None: no price), decided once per book.
        self._timeless: dict[tuple, tuple[Resolution, str] | None] = {}

    @property
    def source_ids(self) -> list[str]:
        return [t.source_id for t in self.tables]

    def resolve(self, response_model: str | None, request_model: str | None = None,
                provider: str | None = None, at: int | None = None) -> Resolution | None:
        """Later tables first; in each, the response model's candidates, then the request model's;
        the first row with a price in effect at `at` wins (a table whose only periods for the
        model lie elsewhere in time gives way to the tables under it)."""
        cache_key = (response_model, request_model, provider)
        matches = self._matches.get(cache_key)
        if matches is None:
            matches = self._match(response_model, request_model, provider)
            if len(self._matches) >= RESOLVED_CACHE_SIZE:
                self._matches.clear()
            self._matches[cache_key] = matches
        for model, key, how, table in matches:
            found = table.at(key, at)
            if found is not None:
                price, entry = found
                return Resolution(model=model, key=key, how=how, table=table, price=price, entry=entry)
        return None

    def _match(self, response_model, request_model, provider) -> tuple[Match, ...]:
        """Every (model, row, table) that could price these names, best first, whatever the time."""
        names = [m for m in (response_model, request_model) if m]
        options = [(m, key, how) for m in names for key, how in candidates(m, provider, self.aliases)]
        return tuple((model, key, how, table) for table in reversed(self.tables)
                     for model, key, how in options if table.has(key))

    def mode_for(self, provider: str | None, resolution: Resolution | None = None) -> str:
        """Cache-token mode: by the span's provider, else by the matched row's provider."""
        for name in (provider, resolution.price.provider if resolution else None):
            if name:
                mode = self.token_modes.get(name.lower())
                if mode:
                    return mode
        return self.default_mode

    def price(self, usage: Usage, response_model: str | None, request_model: str | None = None,
              provider: str | None = None, at: int | None = None) -> Estimate | None:
        cache_key = (response_model, request_model, provider)
        timeless = self._timeless
        if cache_key in timeless:
            found = timeless[cache_key]
            if found is None:
                return None
            resolution, mode = found
        else:
            resolution = self.resolve(response_model, request_model, provider, at)
            mode = self.mode_for(provider, resolution) if resolution is not None else ""
            if all(table.dated.get(key) is None for _, key, _, table in self._matches[cache_key]):
                if len(timeless) >= RESOLVED_CACHE_SIZE:
                    timeless.clear()
                timeless[cache_key] = None if resolution is None else (resolution, mode)
            if resolution is None:
                return None
        cost = price_usage(resolution.price, usage, mode)
        return Estimate(pico=cost.pico, source=resolution.source, cost=cost, resolution=resolution)

    def rate_at(self, response_model: str | None, request_model: str | None, provider: str | None,
                at: int) -> tuple[Resolution | None, str, int, int]:
        """What `price` would price these names with at `at` (the resolution, or None, and the
        cache-token mode), and the instants [lo, hi) around `at` over which that answer holds:
        a batch resolves each distinct name once, not each span (its spans' start times are close)."""
        resolution = self.resolve(response_model, request_model, provider, at)
        mode = self.mode_for(provider, resolution) if resolution is not None else ""
        # Every match's periods begin and end at these instants; between two of them, which
        # periods are in effect (so which row wins) cannot change.
        bounds = sorted({edge for _, key, _, table in self._matches[(response_model, request_model, provider)]
                         for period in table.dated.get(key, ())
                         for edge in (period.valid_from, period.valid_until) if edge is not None})
        place = bisect_right(bounds, at)
        lo = bounds[place - 1] if place else EARLIEST
        hi = bounds[place] if place < len(bounds) else LATEST
        return resolution, mode, lo, hi

    def estimate(self, model: str, input_tokens: int, output_tokens: int,
                 provider: str | None = None) -> Estimate | None:
        """A cost for planned usage (e.g. a budget reservation); None when the model is unknown."""
        return self.price(Usage(input=input_tokens, output=output_tokens), model, None, provider)


class PriceBookHandle:
    """A stable reference to the current book: what other components keep and call."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book

    def estimate(self, model: str, input_tokens: int, output_tokens: int,
                 provider: str | None = None) -> Estimate | None:
        return self.book.estimate(model, input_tokens, output_tokens, provider)

    def price(self, usage: Usage, response_model: str | None, request_model: str | None = None,
              provider: str | None = None, at: int | None = None) -> Estimate | None:
        return self.book.price(usage, response_model, request_model, provider, at)

    @property
    def source_ids(self) -> list[str]:
        return self.book.source_ids


def builtin_book() -> PriceBook:
    """The book of the table shipped in the package alone (no price processor configured)."""
    sources = PriceSources([SourceSpec("builtin")])
    sources.refresh()
    return PriceBook(sources.tables() or [load_builtin()])

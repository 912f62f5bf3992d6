"""The `price` processor: stamp each model call's own cost and each workflow's running spend.

For every span with a model and token counts it writes `cost.usd` (this call only, never a
sum over children), `cost.price_source` (`name@version#digest` of the table that priced
it) and `cost.origin` (`computed`, or `reported` when the span carried a provider cost,
which is kept and compared with the sidecar's own figure). Spans with a `workflow.id`
also get `workflow.spend_total_usd`: the workflow's spend as this sidecar has seen it,
this span included. Amounts are exact pico-USD integers until written as doubles.

The first price processor of a pipeline prices into the host's price book (so the budget
engine's estimates use its sources) and keeps the host's spend ledger.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Literal

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import COST_ORIGIN, COST_SOURCE, COST_USD, MISSING_KEY, SPEND_TOTAL
from costctx.pdata.codec.api import SpanEdits, spans_having
from costctx.pdata.ids import span_identity
from costctx.pdata.view_batch import ViewBatch
from costctx.pricing.book import PriceBook, PriceBookHandle
from costctx.pricing.calc import ADDITIVE, INCLUSIVE, Usage
from costctx.pricing.ledger import SpendLedger
from costctx.pricing.money import from_usd, to_usd_float
from costctx.pricing.sources import PriceSources, ReloadEvent

# The usage keys, shared with re-pricing outside the pipeline (`costctx price --explain-span`).
from costctx.pricing.span_usage import (
    AUDIO_INPUT,
    CACHE_CREATION,
    CACHE_READ,
    CACHE_WRITE,
    IMAGE_INPUT,
    INPUT,
    INPUT_ONLY_OPERATIONS,
    OPERATION,
    OUTPUT,
    PROVIDER,
    REASONING,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    TEXT_INPUT,
)
from costctx.processors.price.calls import (
    COST_AMOUNT,
    COST_CURRENCY,
    READ_KEYS,
    REPORTED_COST,
    REPORTED_KEYS,
    TRIGGER_KEYS,
    WORKFLOW_ID,
    native_price_calls,
    native_stamp_totals,
    price_calls,
    stamp_totals,
)
from costctx.processors.price.config import PriceConfig, build_archive, build_book, source_specs
from costctx.processors.price.metrics import PriceMetrics, inc_each, observe_each
from costctx.survival.bounded import BoundedLabel

NS_PER_SECOND = 1_000_000_000
# Distinct (response model, request model, provider) whose rate process_view keeps.
RATES_CACHE_SIZE = 4096

COMPUTED, REPORTED, UPSTREAM, UNTRACKED = "computed", "reported", "upstream", "untracked"
# Stamps the same on every span they go on: one tuple each, shared by the spans' edit lists.
STAMP_COMPUTED, STAMP_REPORTED = (COST_ORIGIN, COMPUTED), (COST_ORIGIN, REPORTED)
STAMP_REPORTED_SOURCE = (COST_SOURCE, f"reported:{REPORTED_COST}")


def _stamp_cost(batch: ViewBatch, index: int, usd: float, source: str, origin: str) -> None:
    """cost.usd, cost.price_source and cost.origin, in that order: three ViewBatch.set in one
    (the edit list and the view's attrs kept in step the same way)."""
    stamps = ((COST_USD, usd), (COST_SOURCE, source), (COST_ORIGIN, origin))
    edits = batch.edits.span(index)
    if edits.replace is not None:
        # Re-encoded on the slow path (normalize, limits): the codec ignores sets beside a
        # replacement, so ViewBatch.set writes into the replacement.
        for key, value in stamps:
            batch.set(index, key, value)
        return
    edits.sets.extend(stamps)
    batch.view.spans[index].attrs.update(stamps)


def _string(value) -> str | None:
    """A non-empty string attribute, else None (a value of another kind reads as '')."""
    return value if type(value) is str and value else None


def _double(value) -> float | None:
    """SpanRecord.get_double on a decoded value: a double, or an int as a double."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    return None


class PriceProcessor(Processor):
    type_name = "price"
    config_model = PriceConfig
    config: PriceConfig
    on_view = True
    # Only spans with a trigger key are read (spans_having: from the records with the native
    # codec): views are made for those alone, not for every span of the batch.
    columnar = True

    def __init__(self, name: str, config: PriceConfig, host: Host) -> None:
        super().__init__(name, config, host)
        self.metrics = PriceMetrics(self.component_metrics())
        # The labelled children counted every batch, looked up once (labels() costs ~3 us).
        self._priced: dict[str, object] = {}
        self._drift_children: dict[str, object] = {}
        self._miss_children: dict[tuple[str, str], object] = {}
        self._model_label = BoundedLabel("model", config.max_model_labels)
        self._currency_label = BoundedLabel("currency", 20)
        self._warned: set[str] = set()
        self._miss_tally: dict[tuple[str, str], int] = {}  # flushed to the metric once per batch
        self.sources = PriceSources(source_specs(config), build_archive(config))
        self._tolerance_ns = int(config.start_time_tolerance * NS_PER_SECOND)
        self._watching = any(s.type != "builtin" for s in config.sources)
        self._next_check = 0.0
        self._reload_task: asyncio.Task | None = None
        self._now_ns = 0              # this batch's clock reading (process_view)
        self._outside_tolerance = 0   # this batch's spans priced at that clock, not their start
        self._rates: dict[tuple, tuple | None] = {}  # see process_view
        self._rates_book: PriceBook | None = None
        # This batch's running-total work, in visiting order (process_view, _add_spend).
        self._spend: list[tuple[str, int, bytes | None]] = []
        self._stamp_at: list[tuple[int, dict, list | None]] = []
        self._drifts: list[tuple[int, float, str | None]] = []
        events = self.sources.refresh()
        book = build_book(config, self.sources)
        shared = host.claim_price_book(name)
        if shared is not None:
            shared.book = book
        self.book = shared if shared is not None else PriceBookHandle(book)
        self._count_reloads(events)
        self.ledger = SpendLedger(maxsize=config.spend_table_size, ttl=config.spend_ttl,
                                  dedupe_size=config.dedupe_size, dedupe_window=config.dedupe_window)
        if host.spend_ledger is None:
            host.spend_ledger = self.ledger
        self._count_forgotten()

    def _count_forgotten(self) -> None:
        """What the spend ledger's bounded tables forget, read at scrape time."""
        cm = self.component_metrics()
        ledger, dedupe = self.ledger, self.ledger.dedupe_table
        cm.forgotten("spend_totals", "evicted", lambda: ledger.evicted)
        cm.forgotten("spend_totals", "expired", lambda: ledger.expired)
        cm.forgotten("spend_dedupe", "evicted", lambda: dedupe.evicted)
        cm.forgotten("spend_dedupe", "expired", lambda: dedupe.expired)

    # -- pricing -----------------------------------------------------------------------------
    def watched_keys(self) -> frozenset[str]:
        return TRIGGER_KEYS | {PROVIDER, OPERATION, CACHE_READ, CACHE_CREATION, CACHE_WRITE, REASONING, TEXT_INPUT,
                               IMAGE_INPUT, AUDIO_INPUT, COST_CURRENCY, WORKFLOW_ID, COST_USD, COST_ORIGIN,
                               COST_SOURCE, SPEND_TOTAL, MISSING_KEY}

    def process_view(self, batch: ViewBatch) -> ViewBatch:
        """One pass over the batch's spans. The common model call (int token counts, no upstream
        cost, a reported cost only as a valid `gen_ai.usage.cost`, no per-modality counts, a known
        model) is priced inline: the spans read in one call (calls.py, native with the native
        codec), its rate looked up once per distinct (response model, request model, provider)
        and kept while the book is the same, its stamps appended as one edit. Every other span
        worth a look takes `_price_span`, the general path (the inline one must give what it
        gives: tests/processors/price/test_price_inline.py). Running totals are added in visiting
        order in one ledger call, then stamped; reported costs are counted at the batch's end."""
        book = self.book.book
        ledger = self.ledger
        duplicates = ledger.duplicates
        # Counted per batch, not per span: a labelled counter increment costs ~3 us.
        tally = {COMPUTED: 0, REPORTED: 0, UPSTREAM: 0, UNTRACKED: 0, None: 0}
        price_span = self._price_span
        spans = batch.spans_as_read()
        edited = batch.edits.spans
        # One clock reading per batch: a span's start within the tolerance of it is its price time.
        now = self._now_ns = time.time_ns()
        tolerance = self._tolerance_ns
        self._outside_tolerance = 0
        outside = 0
        # (response model, request model, provider) -> (rates, inclusive, source, lo, hi, model),
        # or None when the general path must decide (no price, or a name that is not a string):
        # kept across batches while the book is the same (a reload builds a new one), bounded.
        rates = self._rates
        if self._rates_book is not book or len(rates) >= RATES_CACHE_SIZE:
            rates = self._rates = {}
            self._rates_book = book
        # Priced spans with a workflow.id, in visiting order: their (workflow id, pico, span
        # key) for the ledger and where to stamp the running total.
        spend: list[tuple[str, int, bytes | None]] = []
        stamp_at: list[tuple[int, dict, list | None]] = []
        self._spend, self._stamp_at = spend, stamp_at
        drifts = self._drifts = []  # (|computed - reported| pico, ratio, drift label or None)
        compare = self._compare
        # The per-span reading and the inline calls' pricing and stamps in one call (calls.py;
        # in Rust with the native codec): the general path, the rates, reported costs and the
        # slow path's stamps are called back.
        native = batch.codec.name == "native" and native_price_calls is not None
        price = native_price_calls if native else price_calls

        def general(index: int) -> None:
            tally[price_span(batch, index, spans[index].attrs, book)] += 1

        def rate_of(names: tuple, at: int) -> tuple | None:
            rate = rates[names] = self._rate(book, names, at)
            return rate

        def reported_of(estimate: int, reported: float | int, rate: tuple) -> tuple[int, float]:
            pico = from_usd(reported)
            compare(pico, estimate, rate[5])  # kept, and compared with the sidecar's own figure
            return pico, float(reported)

        def stamp_slow(index: int, usd: float, source: str, origin: str) -> None:
            _stamp_cost(batch, index, usd, source, origin)

        # The spans worth a look (a trigger key), found without making views: the reader skips
        # the others anyway (calls.py), so it gives the same result on these alone (views made
        # already, a plain list: the reader's own skip is that test).
        looked = batch.indices() if type(spans) is list else spans_having(spans, batch.indices(), TRIGGER_KEYS)
        counted = price(spans, looked, now, tolerance, READ_KEYS, rates, rate_of, general, reported_of,
                        edited, SpanEdits, STAMP_COMPUTED, (STAMP_REPORTED_SOURCE, STAMP_REPORTED), COST_USD,
                        stamp_slow, spend, stamp_at)
        tally[COMPUTED] += counted[0]
        tally[REPORTED] += counted[1]
        tally[UNTRACKED] += counted[2]
        outside = counted[3]
        self._outside_tolerance += outside
        if drifts:
            self._count_drifts(drifts)
        if spend:
            stamp = native_stamp_totals if native and native_stamp_totals is not None else stamp_totals
            totals = ledger.add_batch(spend, native)
            stamp(totals, stamp_at, SPEND_TOTAL, lambda index, value: batch.set(index, SPEND_TOTAL, value), spans)
        m = self.metrics
        for origin in (COMPUTED, REPORTED):
            if tally[origin]:
                child = self._priced.get(origin)
                if child is None:  # made on first use: a series appears once it counts something
                    child = self._priced[origin] = m.priced.labels(origin)
                child.inc(tally[origin])
        if tally[UNTRACKED]:
            m.untracked.inc(tally[UNTRACKED])
        if self._outside_tolerance:
            m.time_outside_tolerance.inc(self._outside_tolerance)
        if ledger.duplicates != duplicates:
            m.duplicates.inc(ledger.duplicates - duplicates)
        if self._miss_tally:
            children = self._miss_children
            for pair, count in self._miss_tally.items():
                child = children.get(pair)
                if child is None:  # looked up once per (model label, reason): both bounded
                    child = children[pair] = m.misses.labels(*pair)
                child.inc(count)
            self._miss_tally.clear()
        # The batch's rows let go now, with the batch: kept until the next batch, they held its
        # spans' attrs dicts and edit lists alive, freed (cold) inside the next process_view.
        self._spend, self._stamp_at, self._drifts = [], [], []
        return batch

    def _rate(self, book: PriceBook, names: tuple, at: int) -> tuple | None:
        """The rate entry for (response model, request model, provider) at `at`: the rates in the
        order the inline path multiplies them, whether cache tokens are inside input, the price
        source stamp, the instants [lo, hi) it holds over and the span model that matched (for
        drift labels); None for the general path."""
        response_model, request_model, provider = (_string(name) for name in names)
        if names != (response_model, request_model, provider) or not (response_model or request_model):
            return None  # an empty or non-string name: the general path reads it as absent
        resolution, mode, lo, hi = book.rate_at(response_model, request_model, provider, at)
        if resolution is None:
            return None
        price = resolution.price
        return ((price.input, price.cache_read, price.cache_creation, price.output, price.reasoning),
                mode == INCLUSIVE, (COST_SOURCE, resolution.source), lo, hi, resolution.model)

    def _price_span(self, batch: ViewBatch, index: int, attrs: dict, book: PriceBook) -> str | None:
        """Price one span; returns its origin (or UNTRACKED when priced without a workflow.id)."""
        if COST_ORIGIN in attrs and COST_USD in attrs:
            # Priced by an upstream costctx hop: keep its stamps, count it in the running total.
            upstream = _double(attrs[COST_USD])
            if upstream is not None and math.isfinite(upstream) and upstream >= 0:
                return UPSTREAM if self._add_spend(batch, index, attrs, from_usd(upstream)) else UNTRACKED
        get = attrs.get
        response_model = _string(get(RESPONSE_MODEL))
        request_model = _string(get(REQUEST_MODEL))
        provider = _string(get(PROVIDER))
        usage = self._usage(attrs)
        estimate = None
        if usage is not None and (response_model or request_model):
            start = batch.view.spans[index].start
            estimate = book.price(usage, response_model, request_model, provider, self._price_time(start))
            if estimate is not None and estimate.cost.inconsistent:
                self.metrics.token_mismatch.labels(provider or "unknown").inc()
        reported = self._reported(attrs)
        if reported is False:
            self._miss(batch, index, response_model or request_model, False, "non_usd_reported_cost")
            return None
        if reported is not None:
            key, usd = reported
            pico = from_usd(usd)
            _stamp_cost(batch, index, float(usd), f"reported:{key}", REPORTED)
            origin = REPORTED
            if estimate is not None:
                self._compare(pico, estimate.pico, estimate.resolution.model)
        elif estimate is not None:
            pico = estimate.pico
            _stamp_cost(batch, index, to_usd_float(pico), estimate.source, COMPUTED)
            origin = COMPUTED
        else:
            if response_model or request_model or usage is not None or INPUT in attrs or OUTPUT in attrs:
                self._miss(batch, index, response_model or request_model, usage is None)
            return None
        return origin if self._add_spend(batch, index, attrs, pico) else UNTRACKED

    @staticmethod
    def _count(value) -> int | None:
        """A token count from a decoded value (not None)."""
        kind = type(value)
        if kind is int:
            return value if value >= 0 else None
        if kind is float and value.is_integer():
            count = int(value)  # some SDKs send counts as doubles
        elif kind is str and value.isdigit():
            try:
                count = int(value)
            except ValueError:  # isdigit() also holds for "²" and past int()'s 4,300 digits
                return None
        else:
            return None
        return count if count >= 0 else None

    def _price_time(self, start: int) -> int:
        """The span's start time when it is within the tolerance of this sidecar's clock (read
        once per batch), else that clock; counted per batch."""
        now = self._now_ns
        if abs(start - now) <= self._tolerance_ns:
            return start
        self._outside_tolerance += 1
        return now

    def _usage(self, attrs: dict) -> Usage | None:
        count = self._count
        get = attrs.get
        # An absent key costs one dict probe here, not a call.
        value = get(INPUT)
        input_tokens = count(value) if value is not None else None
        value = get(IMAGE_INPUT)
        image = (count(value) or 0) if value is not None else 0
        value = get(AUDIO_INPUT)
        audio = (count(value) or 0) if value is not None else 0
        if input_tokens is None and (image or audio or TEXT_INPUT in attrs):
            # Only the per-modality breakdown was reported: the input is its sum.
            value = get(TEXT_INPUT)
            text = count(value) if value is not None else 0
            input_tokens = None if text is None else text + image + audio
        value = get(OUTPUT)
        output_tokens = count(value) if value is not None else None
        if output_tokens is None and _string(get(OPERATION)) in INPUT_ONLY_OPERATIONS:
            output_tokens = 0
        if input_tokens is None or output_tokens is None:
            return None
        value = get(CACHE_READ)
        cache_read = (count(value) or 0) if value is not None else 0
        value = get(CACHE_CREATION)
        if value is None:
            value = get(CACHE_WRITE)
        cache_creation = (count(value) or 0) if value is not None else 0
        value = get(REASONING)
        reasoning = (count(value) or 0) if value is not None else 0
        return Usage(input_tokens, output_tokens, cache_read, cache_creation, reasoning, image, audio)

    def _reported(self, attrs: dict) -> tuple[str, float] | None | Literal[False]:
        """The provider-reported cost in USD; False when it is reported in another currency."""
        for key in REPORTED_KEYS:
            if key in attrs:
                value = _double(attrs[key])
                if value is not None and math.isfinite(value) and value >= 0:
                    return key, value
        if COST_AMOUNT in attrs:
            value = _double(attrs[COST_AMOUNT])
            if value is not None and math.isfinite(value) and value >= 0:
                currency = (_string(attrs.get(COST_CURRENCY)) or "USD").strip().upper()
                if currency == "USD":
                    return COST_AMOUNT, value
                self.metrics.reported_other_currency.labels(self._currency_label(currency)).inc()
                return False
        return None

    def _compare(self, reported_pico: int, estimate_pico: int, model: str) -> None:
        """A reported cost against the sidecar's own figure: decided now (the model's label
        taken in visiting order, as the misses' are), counted at the batch's end (_count_drifts)."""
        diff = abs(estimate_pico - reported_pico)
        ratio = diff / reported_pico if reported_pico else (0.0 if diff == 0 else math.inf)
        label = self._model_label(model) if ratio > self.config.drift_tolerance else None
        self._drifts.append((diff, ratio, label))

    def _count_drifts(self, drifts: list[tuple[int, float, str | None]]) -> None:
        """The batch's compared spans: the counters incremented once, the histogram and the USD
        sum per span, in visiting order (float sums in another order round differently)."""
        m = self.metrics
        m.drift_compared.inc(len(drifts))
        inc_each(m.drift_usd, [to_usd_float(diff) for diff, _, _ in drifts])
        observe_each(m.drift_ratio, [ratio for _, ratio, _ in drifts])
        over: dict[str, int] = {}
        for _, _, label in drifts:
            if label is not None:
                over[label] = over.get(label, 0) + 1
        children = self._drift_children
        for label, count in over.items():
            child = children.get(label)
            if child is None:  # looked up once per model label (bounded), not once per batch
                child = children[label] = m.drift_spans.labels(label)
            child.inc(count)

    def _miss(self, batch: ViewBatch, index: int, model: str | None, missing_tokens: bool,
              reason: str | None = None) -> None:
        batch.append_strings(index, MISSING_KEY, [COST_USD])
        reason = reason or ("missing_tokens" if missing_tokens else "unknown_model")
        label = self._model_label(model or "(none)")
        tally = self._miss_tally
        tally[(label, reason)] = tally.get((label, reason), 0) + 1
        warn_key = f"{label}/{reason}"
        if warn_key not in self._warned:
            # One warning per model (and reason), not per span; bounded like the metric label.
            self._warned.add(warn_key)
            if reason == "non_usd_reported_cost":
                self.log.warning("spans of model %r report their cost in a currency other than USD; left unpriced "
                                 "(counted in costctx_price_reported_non_usd_spans_total)", model)
            elif reason == "unknown_model":
                self.log.warning("no price for model %r in %s; its spans carry no cost.usd (counted in "
                                 "costctx_price_misses_total)", model, ", ".join(self.book.source_ids) or "no source")
            else:
                self.log.warning("spans of model %r lack input/output token counts; no cost.usd stamped", model)

    def _add_spend(self, batch: ViewBatch, index: int, attrs: dict, pico: int) -> bool:
        """Add to the workflow's running total and stamp it; False when the span has no workflow.id."""
        workflow_id = _string(attrs.get(WORKFLOW_ID))
        if workflow_id is None:
            return False
        # Added to the ledger and stamped after the batch's pass, in visiting order (process_view).
        self._spend.append((workflow_id, pico, span_identity(batch.view.spans[index])))
        self._stamp_at.append((index, attrs, None))
        return True

    # -- reload ------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if not self._watching or now < self._next_check or self._reload_task is not None:
            return
        self._next_check = now + self.config.reload_interval
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.reload()
            return
        # File IO and parsing (a LiteLLM file is ~1 MB) run off the event loop.
        self._reload_task = loop.create_task(self._reload_in_thread())

    async def _reload_in_thread(self) -> None:
        try:
            events = await asyncio.to_thread(self.sources.refresh)
        finally:
            self._reload_task = None
        self._apply(events)

    def reload(self) -> list[ReloadEvent]:
        """Check every file source now (blocking); swap in a new book if anything changed."""
        events = self.sources.refresh()
        self._apply(events)
        return events

    def _apply(self, events: list[ReloadEvent]) -> None:
        self._count_reloads(events)
        if any(e.ok for e in events):
            self.book.book = build_book(self.config, self.sources)

    def _count_reloads(self, events: list[ReloadEvent]) -> None:
        for event in events:
            (self.metrics.reloads if event.ok else self.metrics.reload_failures).labels(event.source).inc()

    async def close(self) -> None:
        task = self._reload_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


__all__ = ["ADDITIVE", "INCLUSIVE", "PriceConfig", "PriceProcessor"]

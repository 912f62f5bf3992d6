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
from costctx.pdata import TraceBatch
from costctx.pdata.batch import SpanRecord
from costctx.pdata.ids import span_identity
from costctx.pricing.book import Estimate, PriceBook, PriceBookHandle
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
from costctx.processors.price.config import PriceConfig, build_archive, build_book, source_specs
from costctx.processors.price.metrics import PriceMetrics
from costctx.survival.bounded import BoundedLabel

# Provider-reported cost: normalize renames the others to the first; read all in case it is off.
REPORTED_KEYS = ("gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.total_cost")
# Proposed in the GenAI conventions: an amount with its currency (and `.source`).
COST_AMOUNT = "gen_ai.usage.cost.amount"
COST_CURRENCY = "gen_ai.usage.cost.currency"
WORKFLOW_ID = "workflow.id"
# Any of these makes a span worth a look; others are skipped by one set test (C speed).
TRIGGER_KEYS = frozenset((RESPONSE_MODEL, REQUEST_MODEL, INPUT, OUTPUT, *REPORTED_KEYS, COST_AMOUNT))
NS_PER_SECOND = 1_000_000_000

COMPUTED, REPORTED, UPSTREAM, UNTRACKED = "computed", "reported", "upstream", "untracked"


def _stamp_cost(rec: SpanRecord, usd: float, source: str, origin: str) -> None:
    """cost.usd, cost.price_source and cost.origin, in that order: rec.set without its type
    dispatch, and one lookup of the index and of the span's attribute list for all three."""
    attrs = rec.attrs
    add = rec.span.attributes.add
    kv = attrs.get(COST_USD)
    if kv is None:
        kv = attrs[COST_USD] = add(key=COST_USD)
    kv.value.double_value = usd
    kv = attrs.get(COST_SOURCE)
    if kv is None:
        kv = attrs[COST_SOURCE] = add(key=COST_SOURCE)
    kv.value.string_value = source
    kv = attrs.get(COST_ORIGIN)
    if kv is None:
        kv = attrs[COST_ORIGIN] = add(key=COST_ORIGIN)
    kv.value.string_value = origin


def _string(attrs: dict, key: str) -> str | None:
    """A string attribute or None: one dict probe, no oneof check (a non-string reads as '')."""
    kv = attrs.get(key)
    return (kv.value.string_value or None) if kv is not None else None


class PriceProcessor(Processor):
    type_name = "price"
    config_model = PriceConfig
    config: PriceConfig

    def __init__(self, name: str, config: PriceConfig, host: Host) -> None:
        super().__init__(name, config, host)
        self.metrics = PriceMetrics(self.component_metrics())
        self._model_label = BoundedLabel("model", config.max_model_labels)
        self._currency_label = BoundedLabel("currency", 20)
        self._warned: set[str] = set()
        self._miss_tally: dict[tuple[str, str], int] = {}  # flushed to the metric once per batch
        self.sources = PriceSources(source_specs(config), build_archive(config))
        self._tolerance_ns = int(config.start_time_tolerance * NS_PER_SECOND)
        self._watching = any(s.type != "builtin" for s in config.sources)
        self._next_check = 0.0
        self._reload_task: asyncio.Task | None = None
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

    # -- pricing -----------------------------------------------------------------------------
    def process(self, batch: TraceBatch) -> TraceBatch:
        # No scan of batch.raw here: those are the bytes as received, before normalize renamed
        # foreign keys (an OpenInference or vendor span may gain gen_ai.* keys only then), and
        # a substring scan of a 30 KB batch costs as much as the per-span probes below.
        book = self.book.book
        ledger = self.ledger
        duplicates = ledger.duplicates
        # Counted per batch, not per span: a labelled counter increment costs ~3 us.
        tally = {COMPUTED: 0, REPORTED: 0, UPSTREAM: 0, UNTRACKED: 0, None: 0}
        price_span = self._price_span
        for rec in batch.records:
            if not rec.attrs.keys().isdisjoint(TRIGGER_KEYS):
                tally[price_span(rec, book)] += 1
        m = self.metrics
        if tally[COMPUTED]:
            m.priced.labels(COMPUTED).inc(tally[COMPUTED])
        if tally[REPORTED]:
            m.priced.labels(REPORTED).inc(tally[REPORTED])
        if tally[UNTRACKED]:
            m.untracked.inc(tally[UNTRACKED])
        if ledger.duplicates != duplicates:
            m.duplicates.inc(ledger.duplicates - duplicates)
        if self._miss_tally:
            for (label, reason), count in self._miss_tally.items():
                m.misses.labels(label, reason).inc(count)
            self._miss_tally.clear()
        return batch

    def _price_span(self, rec: SpanRecord, book: PriceBook) -> str | None:
        """Price one span; returns its origin (or UNTRACKED when priced without a workflow.id)."""
        attrs = rec.attrs
        if COST_ORIGIN in attrs and COST_USD in attrs:
            # Priced by an upstream costctx hop: keep its stamps, count it in the running total.
            upstream = rec.get_double(COST_USD)
            if upstream is not None and math.isfinite(upstream) and upstream >= 0:
                return UPSTREAM if self._add_spend(rec, from_usd(upstream)) else UNTRACKED
        get = attrs.get
        kv = get(RESPONSE_MODEL)
        response_model = (kv.value.string_value or None) if kv is not None else None
        kv = get(REQUEST_MODEL)
        request_model = (kv.value.string_value or None) if kv is not None else None
        kv = get(PROVIDER)
        provider = (kv.value.string_value or None) if kv is not None else None
        usage = self._usage(rec)
        estimate = None
        if usage is not None and (response_model or request_model):
            estimate = book.price(usage, response_model, request_model, provider, self._price_time(rec.span))
            if estimate is not None and estimate.cost.inconsistent:
                self.metrics.token_mismatch.labels(provider or "unknown").inc()
        reported = self._reported(rec)
        if reported is False:
            self._miss(rec, response_model or request_model, False, "non_usd_reported_cost")
            return None
        if reported is not None:
            key, usd = reported
            pico = from_usd(usd)
            _stamp_cost(rec, float(usd), f"reported:{key}", REPORTED)
            origin = REPORTED
            if estimate is not None:
                self._compare(pico, estimate)
        elif estimate is not None:
            pico = estimate.pico
            _stamp_cost(rec, to_usd_float(pico), estimate.source, COMPUTED)
            origin = COMPUTED
        else:
            if response_model or request_model or usage is not None or INPUT in attrs or OUTPUT in attrs:
                self._miss(rec, response_model or request_model, usage is None)
            return None
        return origin if self._add_spend(rec, pico) else UNTRACKED

    @staticmethod
    def _count(kv) -> int | None:
        """A token count from a KeyValue (not None)."""
        value = kv.value
        count = value.int_value
        if count > 0:
            return count  # the common case, without a oneof check: a set int_value is an int
        kind = value.WhichOneof("value")
        if kind == "int_value":
            pass
        elif kind == "double_value" and value.double_value.is_integer():
            count = int(value.double_value)  # some SDKs send counts as doubles
        elif kind == "string_value" and value.string_value.isdigit():
            try:
                count = int(value.string_value)
            except ValueError:  # isdigit() also holds for "²" and past int()'s 4,300 digits
                return None
        else:
            return None
        return count if count >= 0 else None

    def _price_time(self, span) -> int:
        """The span's start time when it is within the tolerance of this sidecar's clock, else now."""
        now = time.time_ns()
        start = span.start_time_unix_nano
        if abs(start - now) <= self._tolerance_ns:
            return start
        self.metrics.time_outside_tolerance.inc()
        return now

    def _usage(self, rec: SpanRecord) -> Usage | None:
        count = self._count
        get = rec.attrs.get
        # An absent key costs one dict probe here, not a call.
        kv = get(INPUT)
        input_tokens = count(kv) if kv is not None else None
        kv = get(IMAGE_INPUT)
        image = (count(kv) or 0) if kv is not None else 0
        kv = get(AUDIO_INPUT)
        audio = (count(kv) or 0) if kv is not None else 0
        if input_tokens is None and (image or audio or TEXT_INPUT in rec.attrs):
            # Only the per-modality breakdown was reported: the input is its sum.
            kv = get(TEXT_INPUT)
            text = count(kv) if kv is not None else 0
            input_tokens = None if text is None else text + image + audio
        kv = get(OUTPUT)
        output_tokens = count(kv) if kv is not None else None
        if output_tokens is None and rec.get_str(OPERATION) in INPUT_ONLY_OPERATIONS:
            output_tokens = 0
        if input_tokens is None or output_tokens is None:
            return None
        kv = get(CACHE_READ)
        cache_read = (count(kv) or 0) if kv is not None else 0
        kv = get(CACHE_CREATION)
        if kv is None:
            kv = get(CACHE_WRITE)
        cache_creation = (count(kv) or 0) if kv is not None else 0
        kv = get(REASONING)
        reasoning = (count(kv) or 0) if kv is not None else 0
        return Usage(input_tokens, output_tokens, cache_read, cache_creation, reasoning, image, audio)

    def _reported(self, rec: SpanRecord) -> tuple[str, float] | None | Literal[False]:
        """The provider-reported cost in USD; False when it is reported in another currency."""
        for key in REPORTED_KEYS:
            if key in rec.attrs:
                value = rec.get_double(key)
                if value is not None and math.isfinite(value) and value >= 0:
                    return key, value
        if COST_AMOUNT in rec.attrs:
            value = rec.get_double(COST_AMOUNT)
            if value is not None and math.isfinite(value) and value >= 0:
                currency = (rec.get_str(COST_CURRENCY) or "USD").strip().upper()
                if currency == "USD":
                    return COST_AMOUNT, value
                self.metrics.reported_other_currency.labels(self._currency_label(currency)).inc()
                return False
        return None

    def _compare(self, reported_pico: int, estimate: Estimate) -> None:
        m = self.metrics
        m.drift_compared.inc()
        diff = abs(estimate.pico - reported_pico)
        m.drift_usd.inc(to_usd_float(diff))
        ratio = diff / reported_pico if reported_pico else (0.0 if diff == 0 else math.inf)
        m.drift_ratio.observe(ratio)
        if ratio > self.config.drift_tolerance:
            m.drift_spans.labels(self._model_label(estimate.resolution.model)).inc()

    def _miss(self, rec: SpanRecord, model: str | None, missing_tokens: bool, reason: str | None = None) -> None:
        rec.append_strings(MISSING_KEY, [COST_USD])
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

    def _add_spend(self, rec: SpanRecord, pico: int) -> bool:
        """Add to the workflow's running total and stamp it; False when the span has no workflow.id."""
        workflow_id = _string(rec.attrs, WORKFLOW_ID)
        if workflow_id is None:
            return False
        total = self.ledger.add(workflow_id, pico, span_identity(rec.span))
        attrs = rec.attrs
        kv = attrs.get(SPEND_TOTAL)
        if kv is None:
            kv = attrs[SPEND_TOTAL] = rec.span.attributes.add(key=SPEND_TOTAL)
        kv.value.double_value = to_usd_float(total)
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

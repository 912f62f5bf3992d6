"""Which spans of a batch the price processor looks at, and what its inline path prices
them from: one call per batch (`read_calls`), in Python here and in Rust
(`costctx_native._core.read_calls`, native/src/price.rs) with the same result. This is the
mechanical per-span reading; the rates, the arithmetic and every decision stay in the processor.

Per span worth a look, in visiting order, `read_calls` gives either its index alone (the
general path decides: a reported cost under another key or of another kind, an upstream
cost, per-modality counts, counts that are not ints in 0..2^63) or the tuple

    (index, attrs, (response model, request model, provider), input, output, cache read,
     cache creation, reasoning, reported cost or None, workflow id or None, span key or None,
     price time, late)

where a name is the attribute's value as stored (None when absent), the last three counts
are 0 when absent, the workflow id is a non-empty str, the span key is trace id + span id
when both are ids (pdata/ids.py), and the price time is the span's start when within
`tolerance` of `now`, else `now` (`late`).
"""

from __future__ import annotations

import math

from costctx.envelope.keys import COST_ORIGIN
from costctx.pdata.codec.api import edit_attrs
from costctx.pricing.span_usage import (
    AUDIO_INPUT,
    CACHE_CREATION,
    CACHE_READ,
    CACHE_WRITE,
    IMAGE_INPUT,
    INPUT,
    OUTPUT,
    PROVIDER,
    REASONING,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    TEXT_INPUT,
)

try:
    from costctx_native._core import read_calls as native_read_calls
except ImportError:  # built without the extension (or an older build): the Python one below
    native_read_calls = None

# Provider-reported cost: normalize renames the others to the first; read all in case it is off.
REPORTED_KEYS = ("gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.total_cost")
REPORTED_COST = REPORTED_KEYS[0]
# Proposed in the GenAI conventions: an amount with its currency (and `.source`).
COST_AMOUNT = "gen_ai.usage.cost.amount"
COST_CURRENCY = "gen_ai.usage.cost.currency"
WORKFLOW_ID = "workflow.id"
# Any of these makes a span worth a look; others are skipped by one set test (C speed).
TRIGGER_KEYS = frozenset((RESPONSE_MODEL, REQUEST_MODEL, INPUT, OUTPUT, *REPORTED_KEYS, COST_AMOUNT))
# Any of these sends a span down the general path (`_price_span`): a reported or upstream
# cost, per-modality or pending-name counts. The rest is priced inline (process_view).
GENERAL_KEYS = frozenset((*REPORTED_KEYS, COST_AMOUNT, COST_ORIGIN, TEXT_INPUT, IMAGE_INPUT, AUDIO_INPUT,
                          CACHE_WRITE))
GENERAL_KEYS_BUT_REPORTED = GENERAL_KEYS - {REPORTED_COST}
COUNT_KEYS = (INPUT, OUTPUT, CACHE_READ, CACHE_CREATION, REASONING)
NAME_KEYS = (RESPONSE_MODEL, REQUEST_MODEL, PROVIDER)
# What both implementations take as `keys`, in this order.
READ_KEYS = (tuple(TRIGGER_KEYS), tuple(GENERAL_KEYS_BUT_REPORTED), REPORTED_COST, COUNT_KEYS, NAME_KEYS,
             WORKFLOW_ID)
_ZERO_TRACE_ID, _ZERO_SPAN_ID = bytes(16), bytes(8)


def read_calls(spans: list, indices, now: int, tolerance: int, keys: tuple = READ_KEYS) -> list:
    """See the module's doc. `keys` is READ_KEYS (passed so both implementations take the same
    arguments); this one reads the module's constants."""
    out: list = []
    append = out.append
    for index in indices:
        span = spans[index]
        attrs = span.attrs
        present = attrs.keys()
        if present.isdisjoint(TRIGGER_KEYS):
            continue
        get = attrs.get
        reported = None
        if not present.isdisjoint(GENERAL_KEYS):
            # A provider-reported cost under its current key is common: inline too, if valid.
            if not present.isdisjoint(GENERAL_KEYS_BUT_REPORTED):
                append(index)
                continue
            reported = get(REPORTED_COST)
            kind = type(reported)
            if not (kind is float or kind is int) or not 0 <= reported < math.inf:
                append(index)
                continue
        input_tokens, output_tokens = get(INPUT), get(OUTPUT)
        cache_read, cache_creation, reasoning = get(CACHE_READ, 0), get(CACHE_CREATION, 0), get(REASONING, 0)
        # Ints (not bools) in 0..2^63: an int OR shifted by 63 is 0 iff each of them is.
        if not (type(input_tokens) is type(output_tokens) is type(cache_read) is type(cache_creation)
                is type(reasoning) is int) or (input_tokens | output_tokens | cache_read | cache_creation
                                               | reasoning) >> 63:
            append(index)
            continue
        start = span.start
        late = not -tolerance <= start - now <= tolerance
        workflow_id = get(WORKFLOW_ID)
        if type(workflow_id) is not str or not workflow_id:
            workflow_id = None
        trace_id, span_id = span.trace_id, span.span_id
        key = (trace_id + span_id if len(trace_id) == 16 and len(span_id) == 8 and trace_id != _ZERO_TRACE_ID
               and span_id != _ZERO_SPAN_ID else None)
        append((index, attrs, (get(RESPONSE_MODEL), get(REQUEST_MODEL), get(PROVIDER)), input_tokens,
                output_tokens, cache_read, cache_creation, reasoning, reported, workflow_id, key,
                now if late else start, late))
    return out


# -- pricing the inline calls ------------------------------------------------------------------
try:
    from costctx_native._core import price_calls as native_price_calls
    from costctx_native._core import stamp_totals as native_stamp_totals
except ImportError:  # an older build, or no native extension: the Python ones below
    native_price_calls = native_stamp_totals = None

PICO_PER_USD = 10**12


def price_calls(spans: list, indices, now: int, tolerance: int, keys: tuple, rates: dict, rate_of, general,
                reported_of, edits: dict, span_edits, stamp_computed: tuple, stamp_reported: tuple, cost_key: str,
                stamp_slow, spend: list, stamp_at: list) -> tuple[int, int, int, int]:
    """The price processor's pass over a batch, after `read_calls`: each inline call priced at
    its rate and stamped; -> (computed, reported, untracked, late) counts. In Rust with the native
    codec (`costctx_native._core.price_calls`, native/src/price.rs), the same result.

    - rates: (response model, request model, provider) -> the rate entry (processor._rate), or
      None for the general path; `rate_of(names, at)` makes and keeps one when absent or when
      `at` is outside its [lo, hi);
    - general(index): the general path prices the span (and counts it);
    - reported_of(estimate pico, reported, rate) -> (pico, USD double): a reported cost kept,
      compared with the estimate;
    - edits: batch.edits.spans; span_edits: the SpanEdits class; a span re-encoded on the slow
      path is stamped by stamp_slow(index, usd, source, origin);
    - stamp_computed / stamp_reported: the (origin) and (source, origin) stamps shared by spans;
    - spend, stamp_at: appended in visiting order, (workflow id, pico, span key) and (index,
      attrs, the span's sets or None), for the running totals (`stamp_totals`).
    """
    computed = reported_count = untracked = outside = 0
    for call in read_calls(spans, indices, now, tolerance, keys):
        if type(call) is int:
            general(call)
            continue
        (index, attrs, names, input_tokens, output_tokens, cache_read, cache_creation, reasoning, reported,
         workflow_id, span_key, at, late) = call
        try:
            rate = rates[names]
        except KeyError:
            rate = rate_of(names, at)
        except TypeError:  # a list value: not hashable, and not a model name either
            rate = None
        if rate is not None and not rate[3] <= at < rate[4]:  # a dated row: another period
            rate = rate_of(names, at)
        if rate is None:
            general(index)
            continue
        input_rate, cache_read_rate, cache_creation_rate, output_rate, reasoning_rate = rate[0]
        # calc.price_usage, for counts that agree with the mode (else the general path).
        if rate[1]:
            uncached = input_tokens - cache_read - cache_creation
            if uncached < 0:
                general(index)
                continue
        else:
            uncached = input_tokens
        if reasoning > output_tokens:
            general(index)
            continue
        outside += late
        pico = (uncached * input_rate + cache_read * cache_read_rate + cache_creation * cache_creation_rate
                + (output_tokens - reasoning) * output_rate + reasoning * reasoning_rate)
        if reported is None:
            stamps = ((cost_key, pico / PICO_PER_USD), rate[2], stamp_computed)
        else:
            pico, usd = reported_of(pico, reported, rate)
            stamps = ((cost_key, usd), *stamp_reported)
        span_edit = edits.get(index)
        if span_edit is None:
            span_edit = edits[index] = span_edits()
        if span_edit.replace is None:
            span_edit.sets.extend(stamps)
            attrs.update(stamps)
            sets = span_edit.sets
        else:
            stamp_slow(index, stamps[0][1], stamps[1][1], stamps[2][1])
            sets = None
        if workflow_id is not None:
            spend.append((workflow_id, pico, span_key))
            stamp_at.append((index, attrs, sets))
            if reported is None:
                computed += 1
            else:
                reported_count += 1
        else:
            untracked += 1
    return computed, reported_count, untracked, outside


def stamp_totals(totals: list[int], stamp_at: list[tuple[int, dict | None, list | None]], key: str, stamp_slow,
                 spans=None) -> None:
    """`key` (workflow.spend_total_usd) on each span the ledger saw, after its cost stamps: the
    total in USD appended to the span's sets, or by stamp_slow(index, value) for a span re-encoded
    on the slow path (sets None). A span whose attrs are None (the native price_calls read it from
    the lazy list's record, no view made) takes the value through `edit_attrs` on `spans`. In
    Rust: `costctx_native._core.stamp_totals`."""
    for (index, attrs, sets), total in zip(stamp_at, totals, strict=True):
        try:
            value = total / PICO_PER_USD  # money.to_usd_float, inline
        except OverflowError:
            value = math.inf
        if sets is None:
            stamp_slow(index, value)
        else:
            sets.append((key, value))
            if attrs is None:
                edit_attrs(spans, (index,), (), (), ((key, value),))
            else:
                attrs[key] = value

"""The price processor's inline path (process_view: the common model call priced without a
call per span, its rate looked up once per distinct names in the batch, running totals added
in one ledger call) gives what its general path (`_price_span`, span by span) gives: the
same output bytes, running totals and counts, on both codecs, for every shape of span it
takes or hands over (odd counts, reported and upstream costs, unknown and dated models,
non-string names, duplicate and invalid ids, spans outside the time tolerance)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.envelope.keys import SPEND_TOTAL
from costctx.pdata.attributes import set_any_value
from costctx.pdata.view_batch import ViewBatch
from costctx.pricing.ledger import SpendLedger
from costctx.processors.price.calls import READ_KEYS, native_price_calls, native_read_calls, read_calls, stamp_totals
from costctx.processors.price.processor import COMPUTED, REPORTED, TRIGGER_KEYS, UNTRACKED
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

CODECS = available_codecs()
NS = 1_000_000_000
NOW = time.time_ns()
JUNE_2024 = 1_718_000_000 * NS        # gpt-4o's dated $5 / $15 period in the builtin table
CALL = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1_000,
        "gen_ai.usage.output_tokens": 300, "workflow.id": "wf-1"}
# (start time, attributes): each a case the inline path takes, or must hand to the general path.
SHAPES: list[tuple[int, dict]] = [
    (NOW, CALL),
    (NOW, {**CALL, "gen_ai.usage.cache_read.input_tokens": 200, "gen_ai.usage.cache_creation.input_tokens": 100,
           "gen_ai.usage.reasoning.output_tokens": 50, "gen_ai.provider.name": "openai"}),
    (NOW, {**CALL, "gen_ai.provider.name": "anthropic", "gen_ai.response.model": "claude-3-5-sonnet-20241022",
           "gen_ai.usage.cache_read.input_tokens": 5_000}),                         # additive mode
    (NOW, {**CALL, "gen_ai.usage.cache_read.input_tokens": 5_000}),                 # more cached than input
    (NOW, {**CALL, "gen_ai.usage.reasoning.output_tokens": 301}),                   # more reasoning than output
    (NOW, {**CALL, "gen_ai.usage.cost": 0.0123}),
    (NOW, {**CALL, "gen_ai.usage.cost": 2}),
    (NOW, {**CALL, "gen_ai.usage.cost": -1.0}),
    (NOW, {**CALL, "gen_ai.usage.cost": float("nan")}),
    (NOW, {**CALL, "gen_ai.usage.cost": "0.5"}),
    (NOW, {**CALL, "gen_ai.request.model": "mystery", "gen_ai.usage.cost": 0.5}),
    (NOW, {**CALL, "llm.cost.total": 0.25}),
    (NOW, {**CALL, "gen_ai.usage.cost.amount": 0.25, "gen_ai.usage.cost.currency": "EUR"}),
    (NOW, {**CALL, "cost.usd": 0.07, "cost.origin": "computed"}),                  # priced upstream
    (NOW, {**CALL, "gen_ai.usage.input_tokens": 1_000.0}),
    (NOW, {**CALL, "gen_ai.usage.input_tokens": "1000"}),
    (NOW, {**CALL, "gen_ai.usage.input_tokens": -5}),
    (NOW, {**CALL, "gen_ai.usage.output_tokens": True}),
    (NOW, {**CALL, "gen_ai.usage.cache_read.input_tokens": -1}),
    (NOW, {**CALL, "gen_ai.usage.image.input_tokens": 100}),
    (NOW, {**CALL, "gen_ai.usage.cache_write.input_tokens": 100}),
    (NOW, {**CALL, "gen_ai.request.model": "mystery"}),
    (NOW, {**CALL, "gen_ai.request.model": ""}),
    (NOW, {**CALL, "gen_ai.request.model": 7}),
    (NOW, {**CALL, "gen_ai.request.model": ["gpt-4o", "gpt-4o-mini"]}),
    (NOW, {**CALL, "gen_ai.response.model": ["x"], "gen_ai.provider.name": "openai"}),
    (NOW, {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10}),    # no model
    (NOW, {"gen_ai.request.model": "text-embedding-3-small", "gen_ai.operation.name": "embeddings",
           "gen_ai.usage.input_tokens": 10}),
    (NOW, {**CALL, "workflow.id": ""}),
    (NOW, {k: v for k, v in CALL.items() if k != "workflow.id"}),
    (NOW, {**CALL, "workflow.id": "wf-2", "gen_ai.request.model": "gpt-4o"}),
    (JUNE_2024, {**CALL, "gen_ai.request.model": "gpt-4o"}),                       # dated: its own period
    (NOW - 2 * 3600 * NS, {**CALL, "gen_ai.request.model": "gpt-4o"}),
    (NOW, {"http.route": "/x", "workflow.id": "wf-1"}),                             # not a model call
]


def build(spans: list[tuple[bytes, int, dict]]) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span_id, start, attrs in spans:
        span = scope.spans.add(trace_id=b"\x01" * 16, span_id=span_id, name="s", start_time_unix_nano=start)
        for key, value in attrs.items():
            set_any_value(span.attributes.add(key=key).value, value)
    return request.SerializeToString()


def general_path(processor, batch: ViewBatch) -> Counter:
    """Every span worth a look through `_price_span`, one by one, then the running totals: the
    processor as it was before the inline path."""
    processor._now_ns = time.time_ns()
    processor._outside_tolerance = 0
    processor._spend, processor._stamp_at, processor._drifts = [], [], []
    book = processor.book.book
    origins: Counter = Counter()
    for index in batch.indices():
        attrs = batch.view.spans[index].attrs
        if not attrs.keys().isdisjoint(TRIGGER_KEYS):
            origins[processor._price_span(batch, index, attrs, book)] += 1
    if processor._spend:
        stamp_totals(processor.ledger.add_batch(processor._spend), processor._stamp_at, SPEND_TOTAL,
                     lambda index, value: batch.set(index, SPEND_TOTAL, value))
    if processor._drifts:
        processor._count_drifts(processor._drifts)
    origins[COMPUTED] += 0
    return origins


def inline_path(processor, batch: ViewBatch) -> Counter:
    before = {o: processor.metrics.priced.labels(o)._value.get() for o in (COMPUTED, REPORTED)}
    untracked = processor.metrics.untracked._value.get()
    processor.process_view(batch)
    found = Counter({o: processor.metrics.priced.labels(o)._value.get() - before[o] for o in before})
    found[UNTRACKED] = processor.metrics.untracked._value.get() - untracked
    return found


def check(codec, spans: list[tuple[bytes, int, dict]], tolerance: str) -> None:
    raw = build(spans)
    inline = standalone_processor("price", start_time_tolerance=tolerance)
    general = standalone_processor("price", start_time_tolerance=tolerance)
    fast_batch = ViewBatch(codec, raw, inline.watched_keys())
    slow_batch = ViewBatch(codec, raw, general.watched_keys())
    found, expected = inline_path(inline, fast_batch), general_path(general, slow_batch)
    assert codec.encode(fast_batch.view, fast_batch.edits) == codec.encode(slow_batch.view, slow_batch.edits)
    assert repr([s.attrs for s in fast_batch.view.spans]) == repr([s.attrs for s in slow_batch.view.spans])  # NaN
    for origin in (COMPUTED, REPORTED, UNTRACKED):
        assert found[origin] == expected[origin], origin
    assert inline.ledger.totals() == general.ledger.totals()
    assert inline.ledger.duplicates == general.ledger.duplicates
    for name in ("drift_compared", "drift_usd"):  # reported costs compared with the computed ones
        assert getattr(inline.metrics, name)._value.get() == getattr(general.metrics, name)._value.get(), name
    assert inline.metrics.drift_ratio._sum.get() == general.metrics.drift_ratio._sum.get()
    assert inline._outside_tolerance == general._outside_tolerance


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("tolerance", ["1h", "2000000h"])
def test_every_shape_in_one_batch(codec, tolerance):
    spans = [(i.to_bytes(8, "big"), start, attrs) for i, (start, attrs) in enumerate(SHAPES, start=1)]
    # The same spans again (a resend within the batch: not counted twice), and ids that are not ids.
    spans += spans[:3] + [(bytes(8), NOW, CALL), (bytes(8), NOW, CALL)]
    check(codec, spans, tolerance)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(1, 6)), max_size=40),
       codec=st.sampled_from(CODECS))
def test_any_mix_of_shapes(picks, codec):
    # Span ids from a small pool: resends and repeats land anywhere in the batch.
    spans = [(span_no.to_bytes(8, "big"), *SHAPES[shape]) for shape, span_no in picks]
    check(codec, spans, "1h")


def test_ledger_add_batch_is_add_in_order():
    clock = [100.0]
    # The dedupe set holds every key here: its size bound drops a generation at a time, and add's
    # generations (one per call) are not add_batch's (one per batch), so only age is compared.
    one, batch = (SpendLedger(maxsize=3, ttl=50.0, dedupe_size=64, dedupe_window=20.0, timer=lambda: clock[0])
                  for _ in range(2))
    entries = [("a", 5, b"1"), ("b", 7, b"2"), ("a", 5, b"1"), ("c", 1, None), ("d", 2, b"3"), ("a", 3, b"4"),
               ("e", 1, b"5"), ("a", 5, b"1")]
    for step in range(6):  # resends inside the window, then outside it, then workflows expired
        expected = [one.add(*entry) for entry in entries]
        assert batch.add_batch(entries) == expected
        assert batch.totals() == one.totals() and set(batch._seen._entries) == set(one._seen._entries)
        assert batch.duplicates == one.duplicates
        clock[0] += 12.0 * step


NATIVE_CODECS = [c for c in CODECS if c.name == "native"]


@pytest.mark.skipif(not NATIVE_CODECS or native_read_calls is None, reason="costctx_native not built")
@settings(max_examples=80, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, 6)), max_size=30),
       tolerance=st.sampled_from([0, 3600 * NS, 2**62]), order=st.booleans())
def test_native_read_calls_is_the_python_one(picks, tolerance, order):
    # Span id 0 is not an id (no span key); the others repeat within the batch.
    raw = build([(span_no.to_bytes(8, "big"), *SHAPES[shape]) for shape, span_no in picks])
    spans = NATIVE_CODECS[0].scan(raw, standalone_processor("price").watched_keys()).spans
    indices = list(range(len(spans)))[::-1] if order else range(len(spans))
    now = time.time_ns()
    got = native_read_calls(spans, indices, now, tolerance, READ_KEYS)
    want = read_calls(spans, indices, now, tolerance, READ_KEYS)
    assert repr(got) == repr(want)  # repr: NaN values compare unequal
    for native, python in zip(got, want, strict=True):  # the same objects, not copies, where they are objects
        if type(python) is tuple:
            assert native[1] is python[1] and native[11] is python[11]


def _priced_by(implementation: str, raw: bytes, tolerance: str):
    """The native codec's batch priced with the native price_calls/stamp_totals or their Python twins."""
    from costctx.processors.price import processor as module

    processor = standalone_processor("price", start_time_tolerance=tolerance)
    batch = ViewBatch(NATIVE_CODECS[0], raw, processor.watched_keys())
    with pytest.MonkeyPatch.context() as patch:
        if implementation == "python":
            patch.setattr(module, "native_price_calls", None)
        processor.process_view(batch)
    counts = [processor.metrics.priced.labels(o)._value.get() for o in (COMPUTED, REPORTED)]
    return (NATIVE_CODECS[0].encode(batch.view, batch.edits), repr([s.attrs for s in batch.view.spans]), counts,
            processor.metrics.untracked._value.get(), processor.ledger.totals(),
            processor.ledger.duplicates, processor._outside_tolerance, processor.metrics.drift_usd._value.get(),
            processor.metrics.drift_ratio._sum.get())


@pytest.mark.skipif(not NATIVE_CODECS or native_price_calls is None, reason="costctx_native not built")
@settings(max_examples=80, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, 6)), max_size=30),
       tolerance=st.sampled_from(["1h", "2000000h"]))
def test_native_price_calls_prices_and_stamps_as_the_python_one(picks, tolerance):
    raw = build([(span_no.to_bytes(8, "big"), *SHAPES[shape]) for shape, span_no in picks])
    assert _priced_by("native", raw, tolerance) == _priced_by("python", raw, tolerance)


@pytest.mark.skipif(not NATIVE_CODECS or native_price_calls is None, reason="costctx_native not built")
def test_native_price_calls_on_the_bench_workload():
    from bench.workload import WorkloadSpec, build_requests

    for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=5)):
        native, python = _priced_by("native", raw, "2000000h"), _priced_by("python", raw, "2000000h")
        assert native == python and native[2][0] > 0 and native[2][1] > 0  # computed and reported costs

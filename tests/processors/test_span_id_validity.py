"""Which spans have ids the price ledger and budget's seen set key them by (a valid trace id and
span id, W3C: 16 and 8 bytes, neither all zero; native/src/span_read.rs SpanRead::valid_ids):
the native readings, from a lazy list's records and from views, take the same spans as the
Python ones, on ids of every wrong length and zeros everywhere but one byte at either end."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.attributes import set_any_value
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.budget.spend_read import READ_KEYS, native_read_spend, read_spend
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

CODECS = available_codecs()
NS = 1_000_000_000
NOW = 1_790_000_000
CALL = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1_000,
        "gen_ai.usage.output_tokens": 300, "workflow.id": "wf-1", "cost.usd": 0.0021}
MARKERS = frozenset({"gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "cost.usd"})
# (trace id, span id, valid)
IDS = [
    (b"\x01" * 16, b"\x02" * 8, True),
    (bytes(15) + b"\x01", bytes(7) + b"\x01", True),   # zero but the last byte
    (b"\x80" + bytes(15), b"\x80" + bytes(7), True),   # zero but the first byte
    (bytes(8) + b"\x01" + bytes(7), bytes(3) + b"\x01" + bytes(4), True),
    (bytes(16), b"\x02" * 8, False),
    (b"\x01" * 16, bytes(8), False),
    (bytes(16), bytes(8), False),
    (b"\x01" * 15, b"\x02" * 8, False),
    (b"\x01" * 17, b"\x02" * 8, False),
    (b"\x01" * 16, b"\x02" * 7, False),
    (b"\x01" * 16, b"\x02" * 9, False),
    (b"\x01" * 32, b"\x02" * 16, False),
    (b"", b"", False),
]


def build() -> bytes:
    """Each id pair's model call twice in one request (a resend: keyed once when its ids are valid)."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for trace_id, span_id, _ in IDS * 2:
        span = scope.spans.add(trace_id=trace_id, span_id=span_id, name="chat", start_time_unix_nano=NOW * NS,
                               end_time_unix_nano=NOW * NS + 1)
        for key, value in CALL.items():
            set_any_value(span.attributes.add(key=key).value, value)
    return request.SerializeToString()


VALID = sum(valid for *_, valid in IDS)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_the_price_ledger_keys_the_spans_with_valid_ids(codec):
    processor = standalone_processor("price", start_time_tolerance="2000000h")
    processor.process_view(ViewBatch(codec, build(), processor.watched_keys()))
    assert processor.ledger.duplicates == VALID  # each valid pair's second call, no other
    assert processor.ledger.totals()


def _read(read, spans) -> tuple:
    seen: OrderedDict = OrderedDict()
    out = read(spans, range(len(spans)), MARKERS, READ_KEYS, float(NOW), 300.0, 100_000_000, seen, 2.0, 1000,
               lambda: None, True)
    return out, list(seen)


@pytest.mark.skipif(native_read_spend is None or len(CODECS) < 2, reason="costctx_native not built")
def test_budget_keys_the_spans_with_valid_ids_from_records_and_views():
    python_codec, native_codec = CODECS
    raw = build()
    expected = _read(read_spend, python_codec.scan(raw, MARKERS | set(READ_KEYS)).spans)
    assert expected[0][3] == VALID and len(expected[1]) == VALID  # duplicates, seen keys
    records = native_codec.scan(raw, MARKERS | set(READ_KEYS)).spans  # lazy: read from its records
    assert _read(native_read_spend, records) == expected
    views = list(native_codec.scan(raw, MARKERS | set(READ_KEYS)).spans)  # made views: read through them
    assert _read(native_read_spend, views) == expected

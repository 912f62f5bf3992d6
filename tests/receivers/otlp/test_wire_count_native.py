"""The receivers' item count on the wire in Rust (native/src/wire_count.rs) against the Python
walk it replaces (pdata/wire_count.python_over_limit, the oracle): the same answer at every
limit around a request's counts, on the bench workload, on logs and metrics requests, on
arbitrary bytes (hypothesis) and on mutated requests, where a fault before or after the limit
is passed decides the answer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.pdata import wire_count
from costctx.pdata.wire_count import python_over_limit
from tests.pdata.codec.test_codec_native import bench_requests, mutate
from tests.receivers.otlp.test_request_items import _logs, _metrics

pytestmark = pytest.mark.skipif(wire_count.native_over_limit is None, reason="costctx_native not built")


def _limits(raw: bytes) -> list[int]:
    """Limits around every count the request could hit, and a few far ones."""
    around = {0, 1, 2, 3, 8192, 2**63 - 1}
    for n in (raw.count(b"\x0a"), raw.count(b"\x12"), len(raw) // 50, len(raw) // 300):
        around.update(range(max(0, n - 3), n + 4))
    return sorted(around)


def _agree(raw: bytes) -> None:
    for limit in _limits(raw):
        assert wire_count.native_over_limit(raw, limit) == python_over_limit(raw, limit), (raw[:64], limit)


def test_the_public_function_uses_the_native_walk_for_bytes():
    raw = bench_requests()[0]
    calls = []
    original = wire_count.native_over_limit
    wire_count.native_over_limit = lambda body, limit: calls.append(limit) or original(body, limit)
    try:
        assert wire_count.over_limit(raw, 5) == python_over_limit(raw, 5)
        assert wire_count.over_limit(bytearray(raw), 5) == python_over_limit(raw, 5)  # not bytes: Python
    finally:
        wire_count.native_over_limit = original
    assert calls == [5]


def test_same_answer_on_the_bench_workload_logs_and_metrics():
    for raw in [*bench_requests(), _logs(4, resources=3), _logs(0, resources=6), _metrics(7), b"", b"\x0a\x00"]:
        _agree(raw)


def test_same_answer_on_mutated_requests():
    rng = random.Random(15)
    requests = bench_requests()
    for _ in range(1500):
        _agree(mutate(rng.choice(requests), rng))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_same_answer_on_arbitrary_bytes(raw):
    _agree(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0x0a, 0x12, 0x08, 0x11, 0x15, 0x1a, 0x0b, 0xfa]),
                          st.binary(max_size=6)), max_size=6))
def test_same_answer_on_nested_blocks(parts):
    """Requests built of resource/scope/item blocks with other fields and faults among them."""
    def block(level: int) -> bytes:
        out = b""
        for tag, body in parts[level:level + 3]:
            inner = block(level + 1) if tag in (0x0a, 0x12) and level < 3 else body
            out += bytes([tag]) + (bytes([len(inner)]) + inner if tag & 7 == 2 else body)
        return out

    _agree(block(0))


def test_the_receiver_counts_in_python_where_the_traces_run_on_the_python_codec():
    from costctx.pdata.codec import PythonCodec, select_codec
    from costctx.receivers.otlp.ingest import Ingest
    from costctx.receivers.otlp.metrics import ReceiverMetrics
    from costctx.service.pipeline import TracesPipeline
    from costctx.telemetry.metrics import SidecarMetrics

    metrics = SidecarMetrics()
    for codec, expected in ((PythonCodec(), python_over_limit), (select_codec("native"), wire_count.over_limit)):
        ingest = Ingest(TracesPipeline([], [], metrics, codec=codec), {}, ReceiverMetrics(metrics), max_items=5)
        assert ingest._over_limit is expected

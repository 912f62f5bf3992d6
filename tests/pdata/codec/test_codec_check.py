"""`Codec.check` (what the receiver validates a traces request with when no processor reads the
view): the same answer as `scan` on both codecs, and the span count, on the bench workload and
on mutated requests."""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.codec.api import CodecError
from tests.pdata.codec.test_codec_native import bench_requests, mutate
from tests.support.codecs import available_codecs

CODECS = available_codecs()


def answer(codec, raw: bytes) -> int | str:
    try:
        return codec.check(raw)
    except CodecError:
        return "rejected"


def scan_answer(codec, raw: bytes) -> int | str:
    try:
        return len(codec.scan(raw, frozenset()).spans)
    except CodecError:
        return "rejected"


def test_check_counts_every_span_of_the_bench_workload():
    for raw in bench_requests():
        request = ExportTraceServiceRequest.FromString(raw)
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        assert [codec.check(raw) for codec in CODECS] == [spans] * len(CODECS)


def test_check_agrees_with_scan_and_across_codecs_on_mutated_requests():
    rng = random.Random(4242)
    seeds = bench_requests()[:3]
    answers = set()
    for _ in range(1500):
        raw = mutate(rng.choice(seeds), rng)
        found = {answer(codec, raw) for codec in CODECS} | {scan_answer(codec, raw) for codec in CODECS}
        assert len(found) == 1, (raw, found)
        answers.add(found.pop() == "rejected")
    assert answers == {True, False}  # both outcomes exercised

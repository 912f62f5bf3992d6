"""Held spans as one-span requests, split on the wire (sidecar/costctx/processors/inherit/split.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.processors.inherit.split import native_one_span_requests, python_one_span_requests

SPLITS = [python_one_span_requests] + ([native_one_span_requests] if native_one_span_requests else [])
needs_native = pytest.mark.skipif(native_one_span_requests is None, reason="costctx_native not built")


def _request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(2):
        resource_spans = request.resource_spans.add(schema_url=f"https://r{r}")
        resource_spans.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        for s in range(2):
            scope_spans = resource_spans.scope_spans.add(schema_url=f"https://s{r}{s}")
            scope_spans.scope.name = f"scope{r}{s}"
            for i in range(3):
                span = scope_spans.spans.add(trace_id=bytes([r + 1]) * 16, span_id=bytes([s, i + 1]) * 4,
                                             name=f"span{r}{s}{i}", kind=3)
                span.attributes.add(key="k").value.int_value = i
    return request


@pytest.mark.parametrize("one_span_requests", SPLITS)
def test_each_span_keeps_its_resource_scope_and_schema_urls_and_stays_canonical(one_span_requests):
    request = _request()
    parts = one_span_requests(request.SerializeToString())
    assert len(parts) == 12
    spans = [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    for (key, payload), (rs, ss, span) in zip(parts, spans, strict=True):
        one = ExportTraceServiceRequest.FromString(payload)
        assert key == span.trace_id + span.span_id
        assert one.SerializeToString() == payload  # canonical: fields in number order
        (got_rs,) = one.resource_spans
        (got_ss,) = got_rs.scope_spans
        assert got_rs.resource == rs.resource and got_rs.schema_url == rs.schema_url
        assert got_ss.scope == ss.scope and got_ss.schema_url == ss.schema_url
        assert list(got_ss.spans) == [span]


@pytest.mark.parametrize("one_span_requests", SPLITS)
def test_concatenated_parts_are_the_request_again_span_for_span(one_span_requests):
    request = _request()
    parts = one_span_requests(request.SerializeToString())
    joined = ExportTraceServiceRequest.FromString(b"".join(payload for _, payload in parts))
    assert [s for rs in joined.resource_spans for ss in rs.scope_spans for s in ss.spans] == \
        [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _same(raw: bytes) -> None:
    """The native split answers as the Python one: the same parts; where the Python walk
    refuses the bytes (ValueError, or IndexError reading past the buffer), the native one
    raises ValueError (it also refuses lengths past their message's end, which the Python walk
    may read as cut short)."""
    try:
        expected = python_one_span_requests(raw)
    except (ValueError, IndexError):
        with pytest.raises(ValueError):
            native_one_span_requests(raw)
        return
    try:
        got = native_one_span_requests(raw)
    except ValueError:
        return
    assert got == expected


@needs_native
def test_the_native_split_is_the_python_one_on_the_bench_workload_and_mutations():
    from bench.workload import WorkloadSpec, build_requests

    rng = random.Random(7)
    for complete in (False, True):
        for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=5)):
            assert native_one_span_requests(raw) == python_one_span_requests(raw)
            for _ in range(40):
                mutated = bytearray(raw)
                for _ in range(rng.choice([1, 2, 8])):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                _same(bytes(mutated[: rng.choice([len(mutated), rng.randrange(len(mutated) + 1)])]))


_span = st.fixed_dictionaries({
    "trace_id": st.binary(min_size=0, max_size=17), "span_id": st.binary(min_size=0, max_size=9),
    "name": st.text(max_size=5), "kind": st.integers(0, 5), "start_time_unix_nano": st.integers(0, 2**64 - 1),
    "dropped_attributes_count": st.integers(0, 2**32 - 1),
})


@needs_native
@settings(max_examples=150, deadline=None)
@given(shape=st.lists(st.lists(st.lists(_span, max_size=3), max_size=3), max_size=3),
       urls=st.booleans(), unknown=st.binary(max_size=12))
def test_the_native_split_is_the_python_one_on_generated_requests(shape, urls, unknown):
    """Any number of resources, scopes and spans (none included), ids of any length, fixed
    and varint fields, schema URLs, and bytes after the request (unknown to both)."""
    request = ExportTraceServiceRequest()
    for r, scopes in enumerate(shape):
        resource_spans = request.resource_spans.add(schema_url=f"r{r}" if urls else "")
        resource_spans.resource.attributes.add(key="service.name").value.string_value = f"s{r}"
        for s, spans in enumerate(scopes):
            scope_spans = resource_spans.scope_spans.add(schema_url=f"s{s}" if urls else "")
            scope_spans.scope.name = f"scope{s}"
            for span in spans:
                scope_spans.spans.add(**span)
    raw = request.SerializeToString()
    assert native_one_span_requests(raw) == python_one_span_requests(raw)
    _same(raw + unknown)

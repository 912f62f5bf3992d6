"""inherit on the native side (read_spans in Rust, the native ancestor table, the native codec)
and on the Python side (their Python oracles, the Python codec) gives the same output: the same
bytes out per batch, the same notes, the same spans held and released, the same counts. On the
bench workload and on generated batches: spans in any order, parents arriving batches later,
forged and duplicate span ids, a few services or 258+ of them, a small cache that evicts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.inprocess import fresh_ids
from bench.workload import WorkloadSpec, build_requests
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.codec.python import PythonCodec
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.inherit.batch_read import native_read_batch
from costctx.processors.inherit.context_cache import ContextCache, NativeContextCache, _AncestorTable
from tests.support.otlp import kv
from tests.support.processors import standalone_processor

pytestmark = pytest.mark.skipif(not AVAILABLE or native_read_batch is None or _AncestorTable is None,
                                reason="costctx_native not built")

CONTEXT = {"workflow.id": "wf-1", "workflow.name": "chat", "request.id": "r-1", "owner.tenant": "acme",
           "owner.feature": "bot", "owner.team": "growth", "owner.user": "u-1", "policy.id": "p-1"}


class Side:
    """One inherit processor on one side, its clock moved by hand, what it emits collected."""

    def __init__(self, native: bool, max_entries: int) -> None:
        from costctx.pdata.codec.native import NativeCodec

        self.codec = NativeCodec() if native else PythonCodec()
        self.processor = standalone_processor("inherit", wait_duration="10s",
                                              cache={"max_entries": max_entries, "max_traces": 50})
        self.now = [1000.0]
        self.processor.use_clock(lambda: self.now[0])
        cache = NativeContextCache if native else ContextCache
        self.processor.cache = cache(max_entries, 300.0, lambda: self.now[0])
        self.emitted: list[bytes] = []
        self.processor.bind(lambda batch: self.emitted.append(batch.payload()))

    def run(self, raw: bytes) -> tuple[bytes, list]:
        batch = ViewBatch(self.codec, raw, self.processor.watched_keys())
        out = self.processor.process_view(batch)
        # Notes by span (ids), not by index: after released spans join a batch, the codecs
        # number its spans differently (the bytes out are the same).
        spans = out.view.spans
        notes = sorted((spans[i].trace_id + spans[i].span_id, sorted((k, sorted(v)) for k, v in n.items()))
                       for i, n in out.notes.items())
        return out.payload(), notes

    def state(self) -> tuple:
        p = self.processor
        return (len(p.cache), p.hold.span_count, p.hold.nbytes, dict(p.cache.evicted), p.cache.disputed,
                sorted(p.cache.sources), len(p.trace_values))


def run_side_by_side(first, second, batches: list[bytes], tick_every: int) -> None:
    """Both sides fed the same batches (and clock ticks): the same output and state after each."""
    for number, raw in enumerate(batches, 1):
        assert first.run(raw) == second.run(raw), f"batch {number}"
        assert first.state() == second.state(), f"batch {number}"
        if tick_every and number % tick_every == 0:
            for side in (first, second):
                side.now[0] += 6.0
                side.processor.tick(side.now[0])
            assert first.emitted == second.emitted
    for side in (first, second):
        side.processor.shutdown()
    assert first.emitted == second.emitted
    assert first.state() == second.state()


def compare(batches: list[bytes], max_entries: int = 1000, tick_every: int = 0) -> None:
    run_side_by_side(Side(True, max_entries), Side(False, max_entries), batches, tick_every)


@pytest.mark.parametrize("complete", [False, True])
def test_the_bench_workload(complete):
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=10))
    compare(pool + fresh_ids(pool, 1), tick_every=7)


def _request(spans: list[tuple]) -> bytes:
    """(service, trace, span id, parent id or None, attributes[, link id or None]) per span, a
    resource per service; a link names a span of the trace before it (a links-as-parent root)."""
    request = ExportTraceServiceRequest()
    by_service: dict = {}
    for service, trace, span_no, parent, attrs, *link in spans:
        rs = by_service.get(service)
        if rs is None:
            rs = by_service[service] = request.resource_spans.add()
            rs.resource.attributes.append(kv("service.name", f"svc-{service}"))
            if service % 2:  # the others supply no owner.version: spans with no context at all
                rs.resource.attributes.append(kv("service.version", "1.2"))
            rs.scope_spans.add()
        span = rs.scope_spans[0].spans.add(name="op", trace_id=bytes([trace + 1]) * 16,
                                            span_id=span_no.to_bytes(8, "big"))
        if parent is not None:
            span.parent_span_id = parent.to_bytes(8, "big")
        if link and link[0] is not None:
            span.links.add(trace_id=bytes([trace]) * 16, span_id=link[0].to_bytes(8, "big"))
        span.attributes.extend(kv(k, v) for k, v in attrs.items())
    return request.SerializeToString()


# A span: service, trace, id (small pool: duplicates and forged ids recur), parent (another id
# of the pool, possibly one that comes batches later or never; 0 is the all-zero invalid id),
# and which context fields it carries, with an odd value now and then.
_values = st.sampled_from(["", "other", 7, True])
_span = st.tuples(
    st.integers(0, 3), st.integers(0, 3), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 12)),
    st.dictionaries(st.sampled_from(list(CONTEXT)), st.one_of(st.none(), _values), max_size=8).map(
        lambda picked: {k: CONTEXT[k] if v is None else v for k, v in picked.items()}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_span, min_size=1, max_size=25), min_size=1, max_size=5),
       max_entries=st.sampled_from([4, 30, 1000]), many_services=st.booleans())
def test_generated_batches(batches, max_entries, many_services):
    raws = []
    for number, spans in enumerate(batches):
        if many_services:  # 258+ services: past the 256 sources with a place of their own
            spans = [(number * 100 + i * 3 + s, *rest) for i, (s, *rest) in enumerate(spans)]
        raws.append(_request(spans))
    compare(raws, max_entries=max_entries, tick_every=2)


def test_more_than_258_services_in_one_run():
    spans = [(service, service % 4, 1 + service % 12, None if service % 3 else 1, dict(CONTEXT))
             for service in range(300)]
    compare([_request(spans[:150]), _request(spans[150:])], max_entries=200)

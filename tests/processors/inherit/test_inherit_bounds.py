"""The `inherit` processor's structures stay bounded and never lose a span.

These drive the processor with real OTLP protobuf batches and a stepped clock, so hundreds
of thousands of traces take seconds, and assert on the structures' sizes (never on time).
The behaviour through a real SDK, sidecar and sink is in test_inherit.py.
"""

from __future__ import annotations

import itertools

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from costctx.pdata import TraceBatch
from costctx.pdata.attributes import any_value_to_python
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.inherit.processor import InheritConfig, InheritProcessor
from tests.support.clock import Clock
from tests.support.processors import standalone_processor
from tests.support.sidecar import sidecar_config, start_sidecar

CONTEXT = {"workflow.id": "wf", "request.id": "req", "owner.tenant": "acme", "owner.feature": "chat"}


def make(**config) -> tuple[InheritProcessor, list[TraceBatch], Clock]:
    processor = standalone_processor("inherit", InheritConfig(**config))
    clock = Clock()
    processor.use_clock(clock)
    emitted: list[TraceBatch] = []
    # Released spans leave as batch views: the tests read them in their protobuf form.
    processor.bind(lambda b: emitted.append(b.trace if isinstance(b, ViewBatch) else b))
    return processor, emitted, clock


def batch(spans, service: str = "svc") -> TraceBatch:
    """spans: (trace_id: int, span_id: int, parent_id: int | None, attributes: dict)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.schema_url = "https://opentelemetry.io/schemas/1.37.0"
    kv = resource_spans.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "test.scope"
    scope_spans.schema_url = "https://opentelemetry.io/schemas/1.30.0"
    for trace_id, span_id, parent_id, attributes in spans:
        span = scope_spans.spans.add()
        span.trace_id = trace_id.to_bytes(16, "big")
        span.span_id = span_id.to_bytes(8, "big")
        if parent_id is not None:
            span.parent_span_id = parent_id.to_bytes(8, "big")
        span.name = f"s{span_id}"
        for key, value in attributes.items():
            attr = span.attributes.add()
            attr.key, attr.value.string_value = key, value
    return TraceBatch(request)


def names(b: TraceBatch | None) -> list[str]:
    if b is None:
        return []
    return [s.name for rs in b.request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attrs(b: TraceBatch, name: str) -> dict:
    for rs in b.request.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                if s.name == name:
                    return {kv.key: any_value_to_python(kv.value) for kv in s.attributes}
    raise KeyError(name)


def test_a_batch_needing_no_repair_passes_whole_and_untouched_in_structure():
    processor, emitted, _ = make()
    b = batch([(1, 2, 1, CONTEXT), (1, 3, 2, CONTEXT), (1, 1, None, CONTEXT)])
    before = [r.span for r in b.records]
    out = processor.process(b)
    assert out is b and names(out) == ["s2", "s3", "s1"]
    assert [r.span for r in out.records] == before  # the shared index was kept
    assert processor.hold.span_count == 0 and not emitted


def test_held_spans_rejoin_with_their_resource_scope_schema_and_notes():
    processor, emitted, _ = make(wait_duration="10s")
    child = batch([(7, 2, 1, {}), (7, 9, 1, CONTEXT)], service="tools")
    child.records[0].note("renamed").add("owner.user")  # an earlier processor's note
    out = processor.process(child)
    assert names(out) == ["s9"]  # the complete span was not held
    assert len(out.records) == 1 and out.records[0].span.name == "s9"
    out = processor.process(batch([(7, 1, None, CONTEXT)], service="api"))
    assert names(out) == ["s1", "s2"]  # released together with its ancestor
    released = next(r for r in out.records if r.span.name == "s2")
    assert released.notes["renamed"] == {"owner.user"}
    assert released.notes["repaired"] == set(CONTEXT)
    assert released.hop == "tools"
    rs = out.request.resource_spans[1]
    assert rs.schema_url == "https://opentelemetry.io/schemas/1.37.0"
    assert rs.scope_spans[0].scope.name == "test.scope"
    assert rs.scope_spans[0].schema_url == "https://opentelemetry.io/schemas/1.30.0"
    assert attrs(out, "s2")["workflow.hop_depth"] == 1  # api -> tools
    assert processor.hold.span_count == 0 and processor.hold.nbytes == 0 and not processor.hold.waiters


def test_timeout_releases_top_down_and_counts_missing():
    processor, emitted, clock = make(wait_duration="1s")
    processor.process(batch([(5, 3, 2, {})]))  # grandchild
    processor.process(batch([(5, 2, 1, {"owner.team": "t"})]))  # child; the root never comes
    processor.tick(clock.now + 0.5)
    assert not emitted and processor.hold.span_count == 2
    processor.tick(clock.now + 1.0)
    assert names(emitted[0]) == ["s2", "s3"]  # the nearer span first, then its descendant
    assert attrs(emitted[0], "s3")["owner.team"] == "t"  # inherited from the released child
    assert processor.hold.span_count == 0
    registry = processor.context.metrics.registry
    assert registry.get_sample_value(
        "costctx_inherit_missing_spans_total", {"processor": "inherit", "reason": "timeout"}
    ) == 2


def test_a_resent_batch_does_not_corrupt_the_hold():
    processor, _, clock = make()
    processor.process(batch([(3, 2, 1, {})]))
    out = processor.process(batch([(3, 2, 1, {})]))  # the client retried the export
    assert names(out) == ["s2"]  # the duplicate passes as it is
    assert processor.hold.span_count == 1
    processor.tick(clock.now + 5)
    assert processor.hold.span_count == 0 and not processor.hold.traces and not processor.hold.waiters


def test_parent_cycles_and_self_links_are_released_not_looped():
    processor, emitted, clock = make()
    processor.process(batch([(4, 1, 2, {}), (4, 2, 1, {}), (4, 3, 3, {})]))
    assert processor.hold.span_count == 3
    processor.tick(clock.now + 5)
    assert sorted(names(emitted[0])) == ["s1", "s2", "s3"]
    assert processor.hold.span_count == 0


def test_hold_bytes_bound_releases_oldest_traces():
    processor, _, _ = make(hold={"max_spans": 1000, "max_bytes": 2000})
    big = {"payload": "x" * 600}
    out_names: list[str] = []
    for trace in range(1, 11):
        out = processor.process(batch([(trace, 2, 1, big)]))
        out_names += names(out)
        assert processor.hold.nbytes <= 2000
    held = processor.hold.span_count
    per_span = processor.hold.nbytes // held  # all the same size
    assert per_span > 600 and held == 2000 // per_span  # as many as fit, no more
    assert len(out_names) == 10 - held and out_names == ["s2"] * (10 - held)
    registry = processor.context.metrics.registry
    assert registry.get_sample_value(
        "costctx_inherit_released_spans_total", {"processor": "inherit", "reason": "overflow"}
    ) == 10 - held


@pytest.mark.e2e  # a soak of hundreds of thousands of traces: the outer loop, not the inner one
def test_churn_through_hundreds_of_thousands_of_traces_stays_bounded():
    """200,000 traces, children first; one root in ten never comes. Sizes asserted every batch."""
    limits = {"cache": {"max_entries": 20_000, "max_traces": 2_000, "ttl": "60s"},
              "hold": {"max_spans": 1_500, "max_bytes": 1_000_000}, "wait_duration": "1s"}
    processor, emitted, clock = make(**limits)
    traces, per_batch = 200_000, 1_000
    sent = passed = 0
    roots: list[tuple] = []
    trace_ids = itertools.count(1)
    for _ in range(traces // per_batch):
        spans, roots = roots, []  # last batch's roots come with this batch's children
        for _ in range(per_batch):
            t = next(trace_ids)
            spans.append((t, 2, 1, {"owner.user": "u"}))  # a model call, lacking the envelope
            if t % 10:
                roots.append((t, 1, None, CONTEXT))
        sent += len(spans)
        passed += len(names(processor.process(batch(spans))))
        clock.now += 0.05
        processor.tick(clock.now)
        hold = processor.hold
        assert len(processor.cache) <= 20_000
        assert len(processor.trace_values) <= 2_000
        assert hold.span_count <= 1_500 and hold.nbytes <= 1_000_000
        assert len(hold.waiters) <= 1_500 and len(hold.traces) <= 1_500
    sent += len(roots)
    passed += len(names(processor.process(batch(roots))))
    processor.shutdown()
    assert next(trace_ids) > 200_000
    assert processor.hold.span_count == 0 and not processor.hold.waiters and not processor.hold.traces
    released = sum(len(names(b)) for b in emitted)
    assert passed + released == sent  # every span left exactly once: none dropped, none doubled
    registry = processor.context.metrics.registry
    reasons = {
        reason: registry.get_sample_value(
            "costctx_inherit_released_spans_total", {"processor": "inherit", "reason": reason}
        ) or 0
        for reason in ("ancestor", "timeout", "overflow", "shutdown")
    }
    # Every child waits for its root (it comes a batch later) and is released once: by its root
    # for 9 traces in 10, by the bounds or at shutdown for the rest; emitted only at shutdown.
    assert reasons["ancestor"] == traces * 9 // 10
    assert reasons["timeout"] + reasons["overflow"] + reasons["shutdown"] == traces // 10
    assert reasons["overflow"] > 0 and reasons["shutdown"] == released


def _export(channel, request: ExportTraceServiceRequest) -> None:
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=ExportTraceServiceRequest.SerializeToString,
        response_deserializer=ExportTraceServiceResponse.FromString,
    )
    export(request, timeout=10)


def test_churn_through_a_real_sidecar_keeps_sizes_within_limits(sink):
    """The same bounds on a running sidecar over OTLP/gRPC, inspected on its loop via runner.call."""
    config = sidecar_config(
        sink.grpc_port, processors=["inherit", "envelope"],
        processor_config={"inherit": {"cache": {"max_entries": 2_000, "max_traces": 500},
                                      "hold": {"max_spans": 300}, "wait_duration": "200ms"}},
    )
    runner = start_sidecar(config)
    processor = runner.sidecar.traces.processors[0]
    rounds, per_round = 20, 500
    try:
        with grpc.insecure_channel(f"127.0.0.1:{runner.sidecar.grpc_port}") as channel:
            for r in range(rounds):
                base = r * 10_000
                spans = [(base + t, 2, 1, {}) for t in range(per_round)]  # their roots never come
                spans += [(base + per_round + t, 5, None, CONTEXT) for t in range(per_round)]
                _export(channel, batch(spans).request)
                sizes = runner.call(
                    lambda: (len(processor.cache), processor.hold.span_count, len(processor.trace_values))
                )
                assert sizes[0] <= 2_000 and sizes[1] <= 300 and sizes[2] <= 500
    finally:
        runner.stop()  # shutdown releases what is still held
    assert sink.wait_for_spans(rounds * per_round * 2)
    assert len(sink.spans()) == rounds * per_round * 2
    orphans = [s for s in sink.spans() if s.name == "s2"]
    assert len(orphans) == rounds * per_round
    assert all(set(s.attributes["costctx.missing"]) >= {"workflow.id"} for s in orphans)


def test_a_failure_mid_batch_leaves_no_span_both_forwarded_and_held(monkeypatch):
    processor, emitted, clock = make()
    processor.process(batch([(9, 3, 2, {})]))  # held from an earlier batch
    original = processor._resolve

    def failing(span, *args):  # decides on the batch view: span s8 by its id
        if span.span_id == (8).to_bytes(8, "big"):
            raise RuntimeError("bug")
        return original(span, *args)

    monkeypatch.setattr(processor, "_resolve", failing)
    b = batch([(8, 2, 1, {}), (9, 2, None, CONTEXT), (8, 8, None, CONTEXT)])
    with pytest.raises(RuntimeError):
        processor.process(b)
    # The pipeline forwards `b` as it stands: its held span left the hold, and the span
    # released into it from the earlier batch is in it (request and index).
    assert processor.hold.span_count == 0 and not processor.hold.waiters
    assert sorted(names(b)) == ["s2", "s2", "s3", "s8"]
    assert sorted(r.span.name for r in b.records) == ["s2", "s2", "s3", "s8"]
    processor.tick(clock.now + 10)
    assert not emitted


def test_a_failure_taking_held_spans_out_leaves_them_forwarded_not_held(monkeypatch):
    processor, emitted, clock = make()
    processor.process(batch([(9, 3, 2, {})]))  # held from an earlier batch

    def failing_split(raw):
        raise ValueError("bug")

    monkeypatch.setattr("costctx.processors.inherit.processor.one_span_requests", failing_split)
    b = batch([(8, 2, 1, {}), (9, 2, None, CONTEXT)])  # s2 of trace 8 would be held
    with pytest.raises(ValueError):
        processor.process(b)
    # Forwarded as it stands: trace 8's child is in it and not in the hold; the span trace 9's
    # root released is in it too.
    assert processor.hold.span_count == 0 and not processor.hold.waiters
    assert sorted(names(b)) == ["s2", "s2", "s3"]
    processor.tick(clock.now + 10)
    assert not emitted


def test_cache_entries_age_out_without_traffic():
    processor, _, clock = make(cache={"ttl": "10s"})
    processor.process(batch([(1, 1, None, CONTEXT), (2, 1, None, CONTEXT)]))
    assert len(processor.cache) == 2 and len(processor.trace_values) == 2
    clock.now += 11
    processor.tick(clock.now)
    assert len(processor.cache) == 0 and len(processor.trace_values) == 0
    # A late child of an expired ancestor is held like any child of an unknown parent.
    processor.process(batch([(1, 5, 1, {})]))
    assert processor.hold.span_count == 1


def test_the_same_span_twice_in_one_batch_is_held_once_and_passed_once():
    processor, _, _ = make()
    out = processor.process(batch([(6, 2, 1, {}), (6, 2, 1, {})]))
    assert names(out) == ["s2"] and len(out.records) == 1
    assert processor.hold.span_count == 1
    out = processor.process(batch([(6, 1, None, CONTEXT)]))
    assert names(out) == ["s1", "s2"]


def test_odd_input_is_carried_not_crashed_on():
    processor, emitted, clock = make()
    b = batch([(1, 1, None, {})])
    root = b.records[0]
    root.set("workflow.id", "wf")
    root.set("owner.tenant", 42)  # not a string: inherited with its type
    root.set("request.id", ["a", "b"])
    root.set("owner.feature", "")  # empty: treated as absent
    processor.process(b)
    empty_ids = batch([(0, 0, 0, {})])  # an all-zero parent id is no parent
    empty_ids.records[0].span.trace_id = b""
    empty_ids.records[0].span.span_id = b""
    empty_ids.records[0].span.links.add()  # a link with no ids is no parent
    assert names(processor.process(empty_ids)) == ["s0"]
    child = processor.process(batch([(1, 2, 1, {})]))
    got = attrs(child, "s2")
    assert got["owner.tenant"] == 42 and got["request.id"] == ["a", "b"] and "owner.feature" not in got
    processor.tick(clock.now + 5)
    assert processor.hold.span_count == 0


def test_a_held_span_leaves_the_batch_not_an_earlier_span_with_the_same_ids():
    # A client bug sends two spans with one trace and span id in one scope: the first has its
    # context and passes, the second lacks it and waits for a parent. The held one must be the
    # one taken out; the one that passed stays, and the records still describe the request.
    processor, _, _ = make()
    sent = batch([(1, 2, None, dict(CONTEXT)), (1, 2, 9, {"workflow.id": "wf"})])
    out = processor.process(sent)
    spans = list(out.request.resource_spans[0].scope_spans[0].spans)
    assert len(spans) == 1 and {kv.key for kv in spans[0].attributes} >= set(CONTEXT)
    assert len(out.records) == 1 and out.records[0].span is spans[0]


# -- floods (issue 16 item 5): one noisy service cannot strip another's attribution -----------


def _flush_counter(processor, structure: str, source: str) -> float:
    registry = processor.context.metrics.registry
    labels = {"processor": processor.name, "structure": structure, "source": source}
    return registry.get_sample_value("costctx_inherit_evictions_total", labels) or 0.0


def test_an_orphan_flood_from_one_service_does_not_release_anothers_held_children():
    """800 children of `checkout` wait for their parents; 20,000 orphans from `noisy` (parents
    that never come) overflow the hold. The orphans go first; when the parents arrive all 800
    children are repaired. (Before: the oldest traces went first: 800 of 800 lost their context.)"""
    processor, emitted, _ = make(hold={"max_spans": 20_000})
    children = [(t, 1000 + t, t, {}) for t in range(1, 801)]  # parent span id == trace number
    assert names(processor.process(batch(children, service="checkout"))) == []
    for start in range(0, 20_000, 2_000):
        flood = [(10**6 + i, 10**7 + i, 10**8 + i, {}) for i in range(start, start + 2_000)]
        processor.process(batch(flood, service="noisy"))
    parents = [(t, t, None, CONTEXT) for t in range(1, 801)]
    out = processor.process(batch(parents, service="checkout"))
    repaired = [n for n in names(out) if attrs(out, n).get("workflow.id") == "wf" and n.startswith("s1")
                and int(n[1:]) >= 1001]
    assert len(repaired) == 800
    assert _flush_counter(processor, "hold", "checkout") == 0
    assert _flush_counter(processor, "hold", "noisy") >= 800
    assert sum(len(names(b)) for b in emitted) + len(names(out)) >= 800  # the orphans left, unrepaired


@pytest.mark.parametrize("junk_context", [{}, {"workflow.id": "junk", "owner.tenant": "junk"}],
                         ids=["no-context", "fake-context"])
def test_a_junk_flood_does_not_evict_another_services_ancestors(junk_context):
    """800 `checkout` parents are remembered; 50,000 junk spans from `noisy` fill the ancestor
    cache; the 800 late children are still repaired on arrival, never held. (Before: the cache
    evicted the oldest entries: 800 of 800 late children lost their context.)"""
    processor, _, _ = make(cache={"max_entries": 50_000})
    parents = [(t, t, None, CONTEXT) for t in range(1, 801)]
    processor.process(batch(parents, service="checkout"))
    for start in range(0, 50_000, 5_000):
        junk = [(10**6 + i, 10**7 + i, None, junk_context) for i in range(start, start + 5_000)]
        processor.process(batch(junk, service="noisy"))
    assert len(processor.cache) <= 50_000
    children = [(t, 1000 + t, t, {}) for t in range(1, 801)]
    out = processor.process(batch(children, service="checkout"))
    assert len(names(out)) == 800  # none held
    assert all(attrs(out, n).get("workflow.id") == "wf" for n in names(out))
    assert _flush_counter(processor, "cache", "checkout") == 0
    source = "(no context)" if not junk_context else "noisy"
    assert _flush_counter(processor, "cache", source) >= 800


def test_a_re_sent_parent_id_with_another_context_repairs_nothing():
    """Issue 16 item 7: a span sent under a known parent's ids with another tenant's context
    neither replaces the parent's context for later children nor passes its own on."""
    processor, _, _ = make()
    processor.process(batch([(1, 1, None, CONTEXT)], service="victim"))
    spoof = {**CONTEXT, "owner.tenant": "attacker", "workflow.id": "wf-attacker"}
    processor.process(batch([(1, 1, None, spoof)], service="attacker"))
    out = processor.process(batch([(1, 2, 1, {})], service="victim"))
    assert names(out) == []  # the disputed parent repairs nothing: the child waits
    registry = processor.context.metrics.registry
    assert registry.get_sample_value("costctx_inherit_disputed_ancestors_total", {"processor": processor.name}) == 1
    # The same span re-sent as it was (a client retry) is no dispute.
    processor2, _, _ = make()
    processor2.process(batch([(1, 1, None, CONTEXT)]))
    processor2.process(batch([(1, 1, None, CONTEXT)]))
    out = processor2.process(batch([(1, 2, 1, {})]))
    assert attrs(out, "s2")["workflow.id"] == "wf"


def test_the_trace_fallback_needs_agreement_not_the_first_value():
    """Issue 16 item 7: one span carrying a foreign workflow.id in a trace cannot take over the
    trace's fallback, nor deny it when the trace's own spans agree. (Before: any second value
    made the fallback ambiguous: the orphan kept no workflow.id.)"""
    processor, emitted, clock = make(wait_duration=1.0)
    foreign = {"workflow.id": "wf-attacker"}
    # The trace's own spans: three carry wf (children of a root that is never exported).
    own = [(7, 10 + i, 99, CONTEXT) for i in range(3)]
    processor.process(batch([(7, 50, 99, foreign)], service="attacker"))
    processor.process(batch(own, service="svc"))
    processor.process(batch([(7, 60, 98, {})], service="svc"))  # an orphan: needs the fallback
    clock.now += 2.0
    processor.tick(clock.now)
    released = [b for b in emitted if "s60" in names(b)]
    assert released and attrs(released[0], "s60")["workflow.id"] == "wf"

    # One against one: no agreement, no fallback (rather than the first value seen).
    processor, emitted, clock = make(wait_duration=1.0)
    processor.process(batch([(8, 50, 99, foreign)], service="attacker"))
    processor.process(batch([(8, 10, 99, CONTEXT)], service="svc"))
    processor.process(batch([(8, 60, 98, {})], service="svc"))
    clock.now += 2.0
    processor.tick(clock.now)
    released = [b for b in emitted if "s60" in names(b)]
    assert released and "workflow.id" not in attrs(released[0], "s60")


def test_structured_context_values_vote_in_the_trace_fallback_without_failing_the_batch():
    """A misbehaving client sends workflow.id as a kvlist or array: the trace fallback's vote
    must count it by content, not raise (TypeError: unhashable), which failed the whole batch."""
    from costctx.pdata.attributes import set_any_value

    processor, emitted, clock = make(wait_duration=1.0)
    sent = batch([(9, 10, 99, {}), (9, 11, 99, {}), (9, 12, 99, {}), (9, 60, 98, {})])
    spans = sent.request.resource_spans[0].scope_spans[0].spans
    for span, value in zip(spans[:3], ({"k": "v"}, {"k": "v"}, ["a", "b"]), strict=True):
        kv = span.attributes.add()
        kv.key = "workflow.id"
        set_any_value(kv.value, value)
    processor.process(TraceBatch(sent.request))
    clock.now += 2.0
    processor.tick(clock.now)
    released = [b for b in emitted if "s60" in names(b)]
    assert released and attrs(released[0], "s60")["workflow.id"] == {"k": "v"}  # two of three agree
    assert processor.context.metrics.registry.get_sample_value(
        "costctx_processor_errors_total", {"processor": processor.name}) in (None, 0.0)

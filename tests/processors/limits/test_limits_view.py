"""limits on the batch view gives what the protobuf path gives (same request, same counts,
same dropped_attributes_count), on both codecs, for spans over and under both limits: long
values in attributes, arrays, kvlists, names, events, links and resources; values set by a
processor before it (normalize's stamp); and values set after it on a span it re-encoded."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata import TraceBatch
from costctx.pdata.attributes import set_any_value
from costctx.pdata.view_batch import ViewBatch
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

LIMITS = {"max_attributes_per_span": 6, "max_attribute_value_length": 20}


CODECS = available_codecs()

text = st.text(alphabet="aé✓", max_size=30)
value = st.recursive(st.one_of(text, st.binary(max_size=30), st.integers(0, 9)),
                     lambda inner: st.lists(inner, max_size=3), max_leaves=4)
keys = st.sampled_from(["a", "b", "owner.tenant", "workflow.id", "costctx.x", "llm.token_count.prompt", "z"])
attrs = st.lists(st.tuples(keys, value), max_size=9)
span_st = st.tuples(text, attrs, st.lists(st.tuples(text, attrs), max_size=2), st.lists(attrs, max_size=2))


def build(resources) -> bytes:
    request = ExportTraceServiceRequest()
    for resource_attrs, spans in resources:
        rs = request.resource_spans.add()
        for key, item in resource_attrs:
            set_any_value(rs.resource.attributes.add(key=key).value, item)
        ss = rs.scope_spans.add()
        for name, span_attrs, events, links in spans:
            span = ss.spans.add(name=name)
            for key, item in span_attrs:
                set_any_value(span.attributes.add(key=key).value, item)
            for event_name, event_attrs in events:
                event = span.events.add(name=event_name)
                for key, item in event_attrs:
                    set_any_value(event.attributes.add(key=key).value, item)
            for link_attrs in links:
                link = span.links.add(trace_id=b"t" * 16, span_id=b"s" * 8)
                for key, item in link_attrs:
                    set_any_value(link.attributes.add(key=key).value, item)
    return request.SerializeToString()


def counts(processor) -> dict:
    registry = processor.host.metrics.registry
    return {s.name: s.value for m in registry.collect() for s in m.samples
            if m.name.startswith("costctx_limits") and not s.name.endswith("_created")}


def through_protobuf(raw: bytes, with_normalize: bool):
    limits = standalone_processor("limits", **LIMITS)
    batch = TraceBatch(ExportTraceServiceRequest.FromString(raw))
    if with_normalize:
        standalone_processor("normalize")._process_trace(batch)
    limits._process_trace(batch)
    return batch.request.SerializeToString(), counts(limits)


def through_view(raw: bytes, codec, with_normalize: bool):
    limits = standalone_processor("limits", **LIMITS)
    processors = [standalone_processor("normalize"), limits] if with_normalize else [limits]
    watched = frozenset().union(*(p.watched_keys() for p in processors))
    batch = ViewBatch(codec, raw, watched)
    for processor in processors:
        assert processor.process_view(batch) is batch
    return ExportTraceServiceRequest.FromString(batch.payload()).SerializeToString(), counts(limits)


@pytest.mark.parametrize("with_normalize", [False, True], ids=["alone", "after-normalize"])
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=st.lists(st.tuples(attrs, st.lists(span_st, max_size=3)), min_size=1, max_size=2))
def test_the_view_path_gives_what_the_protobuf_path_gives(codec, with_normalize, resources):
    raw = build(resources)
    assert through_view(raw, codec, with_normalize) == through_protobuf(raw, with_normalize)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_only_spans_over_a_limit_are_materialised_and_later_sets_reach_them(codec, monkeypatch):
    long_name = ("n" * 30, [("a", 1)], [], [])
    many = ("m", [(f"k{i}", i) for i in range(8)], [], [])
    small = ("s", [("a", "short")], [], [])
    raw = build([([], [long_name, many, small])])
    limits = standalone_processor("limits", **LIMITS)
    batch = ViewBatch(codec, raw, frozenset({"a", "k0"}))
    materialised = []
    original = ViewBatch.materialize
    monkeypatch.setattr(ViewBatch, "materialize", lambda self, i: materialised.append(i) or original(self, i))
    limits.process_view(batch)
    assert materialised == [0, 1]
    assert batch.view.spans[1].attr_count == 6 and batch.view.spans[1].attrs == {"k0": 0}
    # A processor after limits sets a value on a re-encoded span: it lands in the replacement.
    batch.set(1, "cost.usd", 0.5)
    batch.set(2, "cost.usd", 0.25)
    spans = ExportTraceServiceRequest.FromString(batch.payload()).resource_spans[0].scope_spans[0].spans
    assert spans[0].name == "n" * 20
    assert [kv.key for kv in spans[1].attributes] == [f"k{i}" for i in range(6)] + ["cost.usd"]
    assert spans[1].dropped_attributes_count == 2
    assert spans[1].attributes[-1].value.double_value == 0.5
    assert spans[2].attributes[-1].value.double_value == 0.25


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_what_normalize_added_counts_against_the_limits(codec, monkeypatch):
    """normalize's stamp is not in the scanned span: one more attribute than the scan saw
    (6 + costctx.renamed), and a stamp longer than the whole span as received."""
    at_the_count = build([([], [("", [(f"k{i}", i) for i in range(5)] + [("llm.token_count.prompt", 1)], [], [])])])
    short_span = build([([], [("", [("llm.vendor", "x")], [], [])])])
    assert len(ExportTraceServiceRequest.FromString(short_span).resource_spans[0].scope_spans[0].spans[0]
               .SerializeToString()) <= 19 < len("gen_ai.provider.name")
    for raw, limits in ((at_the_count, {"max_attributes_per_span": 6, "max_attribute_value_length": 1000}),
                        (short_span, {"max_attributes_per_span": 6, "max_attribute_value_length": 19})):
        monkeypatch.setattr("tests.processors.limits.test_limits_view.LIMITS", limits)
        want = through_protobuf(raw, with_normalize=True)
        assert sum(want[1].values()) >= 1  # attributes dropped or values cut
        assert through_view(raw, codec, with_normalize=True) == want


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_group_edits_count_toward_the_limits(codec):
    """normalize stamps renamed spans with one group edit: limits counts that attribute, as
    it does a span's own edits (six attributes + the stamp > 6; spans short enough that only
    the count sends them to the exact path)."""
    span_attrs = [("llm.token_count.prompt", 1), ("a", "x"), ("b", "y"), ("z", "w"), ("owner.tenant", "t"),
                  ("workflow.id", "wf")]
    raw = build([([], [("s", span_attrs, [], []), ("s", span_attrs, [], [])])])
    limits = standalone_processor("limits", max_attributes_per_span=6, max_attribute_value_length=1000)
    normalize = standalone_processor("normalize")
    batch = ViewBatch(codec, raw, normalize.watched_keys() | limits.watched_keys())
    normalize.process_view(batch)
    assert batch.edits.groups and not batch.edits.spans  # the stamp is a group edit
    limits.process_view(batch)
    out = ExportTraceServiceRequest.FromString(batch.payload())
    assert [len(s.attributes) for s in out.resource_spans[0].scope_spans[0].spans] == [6, 6]

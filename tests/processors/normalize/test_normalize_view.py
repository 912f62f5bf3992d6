"""normalize on the batch view gives what the protobuf path gives: the same request (every
span, event and resource attribute, in order), the same counters and the same `renamed`
notes, on both codecs, for generated spans with old keys, repeats, events and resources."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata import TraceBatch
from costctx.pdata.attributes import set_any_value
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.normalize.processor import NormalizeConfig
from tests.processors.normalize.test_normalize import SCHEMA_FILE, SCHEMAS
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

CONFIG = NormalizeConfig()


def schema_config(tmp_path_factory) -> NormalizeConfig:
    """User aliases, a schema file with an allow list and renames limited to a named span."""
    folder = tmp_path_factory.mktemp("normalize")
    (folder / "schema.yaml").write_text(SCHEMA_FILE)
    (folder / "named.yaml").write_text(
        "file_format: 1.1.0\nschema_url: https://opentelemetry.io/schemas/1.30.0\nversions:\n"
        "  1.30.0:\n    spans:\n      changes:\n        - rename_attributes:\n"
        "            attribute_map: {x: gen_ai.usage.input_tokens}\n"
        "            apply_to_spans: [chat]\n"
        "  1.20.0:\n")
    (folder / "aliases.yaml").write_text("aliases:\n  - {from: http.route, to: owner.team}\n")
    return NormalizeConfig(alias_files=[str(folder / "aliases.yaml")], schema_files=[
        {"path": str(folder / "schema.yaml"), "allow": ["gen_ai.system", "gen_ai.usage.prompt_tokens"]},
        {"path": str(folder / "named.yaml"), "allow": ["x"]}])
TABLE = CONFIG.builder.base()
OLD = sorted({k for place in TABLE.places.values() for k in place.rules})
CANONICAL = sorted({r.canonical for place in TABLE.places.values() for r in place.rules.values()})
KEYS = OLD + CANONICAL + ["costctx.renamed", "http.route", "x"]

values = st.one_of(
    st.sampled_from(["", "120", "12.5", "openai", "Vertex_AI", "gpt-4o"]), st.text(max_size=4),
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=False), st.booleans(),
    st.lists(st.sampled_from(["a", "gen_ai.request.model"]), max_size=2), st.none(),
)
attributes = st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=8)
urls = st.sampled_from(["", SCHEMAS + "1.20.0", SCHEMAS + "1.25.0", SCHEMAS + "1.36.0"])
span_st = st.tuples(attributes, st.lists(attributes, max_size=2), st.sampled_from(["s", "chat"]))
scope_st = st.tuples(urls, st.lists(span_st, max_size=3))
resource_st = st.tuples(attributes, st.lists(scope_st, min_size=1, max_size=2), urls)


def build(resources) -> bytes:
    request = ExportTraceServiceRequest()
    for resource_attrs, scopes, resource_url in resources:
        rs = request.resource_spans.add(schema_url=resource_url)
        for key, value in resource_attrs:
            set_any_value(rs.resource.attributes.add(key=key).value, value)
        for scope_url, spans in scopes:
            ss = rs.scope_spans.add(schema_url=scope_url)
            for span_attrs, events, name in spans:
                span = ss.spans.add(name=name)
                for key, value in span_attrs:
                    set_any_value(span.attributes.add(key=key).value, value)
                for event_attrs in events:
                    event = span.events.add(name="e")
                    for key, value in event_attrs:
                        set_any_value(event.attributes.add(key=key).value, value)
    return request.SerializeToString()


CODECS = available_codecs()


def counters(processor) -> dict:
    registry = processor.host.metrics.registry
    return {(m.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect()
            for s in m.samples if m.name.startswith("costctx_normalize") and not s.name.endswith("_created")}


def through_protobuf(raw: bytes, config: NormalizeConfig = CONFIG):
    processor = standalone_processor("normalize", config)
    batch = TraceBatch(ExportTraceServiceRequest.FromString(raw))
    processor._process_trace(batch)
    notes = [sorted((rec.notes or {}).get("renamed", ())) for rec in batch.records]
    return batch.request.SerializeToString(), notes, counters(processor)


def through_view(raw: bytes, codec, config: NormalizeConfig = CONFIG):
    processor = standalone_processor("normalize", config)
    batch = ViewBatch(codec, raw, processor.watched_keys())
    assert processor.process_view(batch) is batch
    notes = [sorted(batch.notes.get(i, {}).get("renamed", ())) for i in range(len(batch.view.spans))] \
        if batch._trace is None else [sorted((rec.notes or {}).get("renamed", ())) for rec in batch.trace.records]
    out = ExportTraceServiceRequest.FromString(batch.payload()).SerializeToString()
    return out, notes, counters(processor)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=st.lists(resource_st, min_size=1, max_size=2))
def test_the_view_path_gives_what_the_protobuf_path_gives(codec, resources):
    raw = build(resources)
    assert through_view(raw, codec) == through_protobuf(raw)


@pytest.fixture(scope="module")
def schema_files_config(tmp_path_factory):
    return schema_config(tmp_path_factory)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=st.lists(resource_st, min_size=1, max_size=2))
def test_with_alias_and_schema_files_the_view_path_gives_the_same(codec, schema_files_config, resources):
    raw = build(resources)
    assert through_view(raw, codec, schema_files_config) == through_protobuf(raw, schema_files_config)


def test_each_case_of_the_view_path_is_met():
    """A renamed span on the view, a span with an aliased event key, a repeated old key, a
    resource with an old key and one with it twice (the whole batch on the protobuf path):
    each matches the protobuf path."""
    cases = [
        [([], [("", [([("llm.token_count.prompt", "7"), ("gen_ai.request.model", "m")], [], "s")])], "")],  # edits
        [([], [("", [([("x", 1)], [[("gen_ai.system", "openai")]], "s")])], "")],                      # event
        [([], [("", [([("llm.token_count.prompt", 7), ("llm.token_count.prompt", 8)], [], "s")])], "")],  # repeat
        [([("gen_ai.system", "openai")], [("", [([("x", 1)], [], "s")])], "")],                        # resource
        [([("gen_ai.system", "a"), ("gen_ai.system", "b")], [("", [([("x", 1)], [], "s")])], "")],     # whole batch
    ]
    for resources in cases:
        raw = build(resources)
        want = through_protobuf(raw)
        assert want[0] != ExportTraceServiceRequest.FromString(raw).SerializeToString()  # normalize acted
        for codec in CODECS:
            assert through_view(raw, codec) == want, (codec.name, resources)


def test_a_decision_kept_for_a_signature_never_stands_for_a_value_it_depends_on():
    """normalize keeps 'nothing to do' / 'plain renames' per (key set, value types): spans
    with the same keys and types whose values need more (an old enum value, "", a value to
    coerce, a conflict) still get the full rewrite, batch after batch, on one processor."""
    def span(*attrs):
        return (list(attrs), [], "s")

    kept = [span(("gen_ai.system", "openai"), ("gen_ai.usage.input_tokens", 5)),
            span(("gen_ai.provider.name", "openai"), ("gen_ai.usage.input_tokens", 5)),
            span(("gen_ai.operation.name", "chat"), ("workflow.id", "w")),
            span(("llm.model_name", "m"), ("workflow.id", "w"))]
    tricky = [span(("llm.model_name", ""), ("workflow.id", "w")),                         # "" on an old key
              span(("gen_ai.system", "Vertex_AI"), ("gen_ai.usage.input_tokens", 5)),   # enum value to map
              span(("gen_ai.system", ""), ("gen_ai.usage.input_tokens", 5)),            # ""
              span(("gen_ai.system", "openai"), ("gen_ai.usage.input_tokens", "120")),  # to coerce
              span(("gen_ai.provider.name", "Azure"), ("gen_ai.usage.input_tokens", 5)),
              span(("gen_ai.provider.name", ""), ("gen_ai.usage.input_tokens", 5)),
              span(("gen_ai.operation.name", "completion"), ("workflow.id", "w")),
              span(("gen_ai.operation.name", "chat"), ("workflow.id", 7)),
              span(("gen_ai.system", "openai"), ("gen_ai.usage.input_tokens", 5))]
    for codec in CODECS:
        processor = standalone_processor("normalize", CONFIG)
        for spans in (kept, tricky, kept + tricky):
            raw = build([([], [("", spans)], "")])
            batch = ViewBatch(codec, raw, processor.watched_keys())
            processor.process_view(batch)
            out = ExportTraceServiceRequest.FromString(batch.payload()).SerializeToString()
            assert out == through_protobuf(raw)[0], (codec.name, spans)
            notes = [sorted(batch.notes.get(i, {}).get("renamed", ())) for i in range(len(spans))]
            assert notes == through_protobuf(raw)[1]

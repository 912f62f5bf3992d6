"""The normalize processor through a real sidecar: real SDK in, real OTLP sink out."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from costctx.service.config.loader import ConfigError, build_config
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS
from tests.support.metrics import scrape
from tests.support.sdk import tracer_provider
from tests.support.sidecar import sidecar_config

PIPELINE = ["normalize", "envelope"]
SCHEMAS = "https://opentelemetry.io/schemas/"


def send(side, spans, *, service="app", schema_url=None, resource_attributes=None, provider=None):
    """Emit spans [(name, attributes, events)] with the real SDK; return once exported."""
    provider = provider or tracer_provider(grpc_port=side.sidecar.grpc_port, service=service, batch=False,
                                           resource_attributes=resource_attributes)
    tracer = provider.get_tracer("test.normalize", schema_url=schema_url)
    for name, attributes, *events in spans:
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            for event in events[0] if events else ():
                span.add_event("event", attributes=event)
    provider.shutdown()


def received(sink, count):
    assert sink.wait_for_spans(count)
    return {span.name: span for span in sink.spans()}


def metric_values(side, name):
    """{(key, where): value} of one normalize counter, read from the admin /metrics endpoint."""
    return {(s.labels["key"], s.labels["where"]): s.value for s in scrape(side, f"costctx_normalize_{name}_total")}


def test_normalize_runs_first_by_default():
    assert DEFAULT_TRACE_PROCESSORS[0] == "normalize"
    # envelope: the last to change a span; settle after it only reads the span as it left
    assert DEFAULT_TRACE_PROCESSORS[-2:] == ["envelope", "settle"]


def test_mixed_fleet_leaves_under_one_schema(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        ("openllmetry-old", {"llm.vendor": "OpenAI", "llm.request.model": "gpt-4o", "llm.response.model": "gpt-4o-1",
                             "llm.usage.prompt_tokens": 11, "llm.usage.completion_tokens": 5,
                             "llm.request.type": "completion"}),
        ("semconv-1.26", {"gen_ai.system": "vertex_ai", "gen_ai.request.model": "gemini-2.0",
                          "gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": 5}),
        ("current", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                     "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 5}),
    ])
    spans = received(sink, 3)
    old = spans["openllmetry-old"].attributes
    assert {k: old[k] for k in old if not k.startswith("costctx.")} == {
        "gen_ai.provider.name": "openai",  # `OpenAI`, an old capitalized value
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-1",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.operation.name": "text_completion",
    }
    assert set(old["costctx.renamed"]) == {
        "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.operation.name",
    }
    semconv = spans["semconv-1.26"].attributes
    assert semconv["gen_ai.provider.name"] == "gcp.vertex_ai"  # renamed enum value
    assert (semconv["gen_ai.usage.input_tokens"], semconv["gen_ai.usage.output_tokens"]) == (11, 5)
    assert "gen_ai.system" not in semconv and "gen_ai.usage.prompt_tokens" not in semconv
    current = spans["current"].attributes
    assert "costctx.renamed" not in current
    assert current["gen_ai.usage.input_tokens"] == 11
    assert metric_values(side, "values_renamed") == {("gen_ai.provider.name", "span"): 2.0,
                                                      ("gen_ai.operation.name", "span"): 1.0}


def test_a_second_sidecar_merges_into_the_upstream_stamp(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        ("upstream-stamped", {"costctx.renamed": ["owner.user"], "owner.user": "u-1", "llm.token_count.prompt": 4}),
        ("twice", {"llm.token_count.prompt": 4, "llm.token_count.completion": 1}),
        ("twice-again", {"llm.token_count.completion": 2, "llm.token_count.prompt": 5}),
    ])
    spans = received(sink, 3)
    assert spans["upstream-stamped"].attributes["costctx.renamed"] == ["owner.user", "gen_ai.usage.input_tokens"]
    # spans renaming the same keys share one prebuilt stamp value: each still gets its own
    expected = ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"]
    assert spans["twice"].attributes["costctx.renamed"] == expected
    assert spans["twice-again"].attributes["costctx.renamed"] == expected
    assert spans["twice-again"].attributes["gen_ai.usage.input_tokens"] == 5


def test_conflict_keeps_the_canonical_value_and_is_counted(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        # both keys, different values: the canonical one stays, the old one goes, counted
        ("conflict", {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.prompt_tokens": 90}),
        # both keys, same value (even in another type): a plain duplicate, not a conflict
        ("duplicate", {"gen_ai.usage.output_tokens": 7, "llm.token_count.completion": "7"}),
        # two old keys, no canonical one: the first in the table wins, the other conflicts
        ("two-old", {"llm.usage.prompt_tokens": 8, "llm.token_count.prompt": 9}),
    ])
    spans = received(sink, 3)
    conflict = spans["conflict"].attributes
    assert conflict["gen_ai.usage.input_tokens"] == 100
    assert "gen_ai.usage.prompt_tokens" not in conflict
    assert "costctx.renamed" not in conflict  # the field arrived under its canonical key
    duplicate = spans["duplicate"].attributes
    assert duplicate["gen_ai.usage.output_tokens"] == 7
    assert "llm.token_count.completion" not in duplicate
    two_old = spans["two-old"].attributes
    assert two_old["gen_ai.usage.input_tokens"] == 9  # OpenInference ranks before old OpenLLMetry
    assert "llm.usage.prompt_tokens" not in two_old and "llm.token_count.prompt" not in two_old
    assert two_old["costctx.renamed"] == ["gen_ai.usage.input_tokens"]
    assert metric_values(side, "conflicts") == {("gen_ai.usage.input_tokens", "span"): 2.0}
    assert metric_values(side, "duplicates") == {("gen_ai.usage.output_tokens", "span"): 1.0}


def test_values_are_coerced_where_the_meaning_is_clear(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        ("clear", {"llm.token_count.prompt": "120", "gen_ai.usage.output_tokens": 30.0,
                   "llm.cost.total": "0.0125", "gen_ai.cost.total_cost": 0.0125, "owner.tenant": 42}),
        ("unclear", {"gen_ai.usage.input_tokens": "lots", "gen_ai.usage.output_tokens": 2.5,
                     "gen_ai.usage.cache_read.input_tokens": True, "owner.tenant": 4.2}),
    ])
    spans = received(sink, 2)
    clear = spans["clear"].attributes
    assert clear["gen_ai.usage.input_tokens"] == 120 and type(clear["gen_ai.usage.input_tokens"]) is int
    assert clear["gen_ai.usage.output_tokens"] == 30 and type(clear["gen_ai.usage.output_tokens"]) is int
    # provider-reported cost: one canonical key, a double in USD; the same amount twice is no conflict
    assert clear["gen_ai.usage.cost"] == pytest.approx(0.0125) and type(clear["gen_ai.usage.cost"]) is float
    assert "llm.cost.total" not in clear and "gen_ai.cost.total_cost" not in clear
    assert clear["owner.tenant"] == "42"
    unclear = spans["unclear"].attributes
    assert unclear["gen_ai.usage.input_tokens"] == "lots"
    assert unclear["gen_ai.usage.output_tokens"] == 2.5
    assert unclear["gen_ai.usage.cache_read.input_tokens"] is True
    assert unclear["owner.tenant"] == 4.2
    assert metric_values(side, "coerced") == {
        ("gen_ai.usage.input_tokens", "span"): 1.0, ("gen_ai.usage.output_tokens", "span"): 1.0,
        ("gen_ai.usage.cost", "span"): 1.0, ("owner.tenant", "span"): 1.0,
    }
    assert metric_values(side, "uncoercible") == {
        ("gen_ai.usage.input_tokens", "span"): 1.0, ("gen_ai.usage.output_tokens", "span"): 1.0,
        ("gen_ai.usage.cache_read.input_tokens", "span"): 1.0, ("owner.tenant", "span"): 1.0,
    }
    assert metric_values(side, "duplicates") == {("gen_ai.usage.cost", "span"): 1.0}


def test_coercion_can_be_turned_off(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE, processor_config={"normalize": {"coerce": False}})
    send(side, [("s", {"llm.token_count.prompt": "120"})])
    assert received(sink, 1)["s"].attributes["gen_ai.usage.input_tokens"] == "120"


def test_coarse_provider_key_is_only_a_fallback(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        ("host-only", {"llm.provider": "azure"}),
        ("both", {"llm.provider": "azure", "llm.system": "openai"}),
    ])
    spans = received(sink, 2)
    host_only = spans["host-only"].attributes
    assert host_only["gen_ai.provider.name"] == "azure.ai.openai"
    assert "llm.provider" not in host_only
    both = spans["both"].attributes
    assert both["gen_ai.provider.name"] == "openai"
    assert both["llm.provider"] == "azure"  # a different, coarser fact: kept, no conflict
    assert metric_values(side, "conflicts") == {}


def test_model_name_is_the_response_model_only_when_there_was_a_response(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        ("answered", {"llm.model_name": "gpt-4o-2024-08-06", "llm.token_count.completion": 3}),
        ("failed", {"llm.model_name": "gpt-4o", "error.type": "timeout"}),
    ])
    spans = received(sink, 2)
    answered, failed = spans["answered"].attributes, spans["failed"].attributes
    assert answered["gen_ai.response.model"] == "gpt-4o-2024-08-06" and "gen_ai.request.model" not in answered
    assert failed["gen_ai.request.model"] == "gpt-4o" and "gen_ai.response.model" not in failed
    assert "llm.model_name" not in failed


def test_span_events_and_untouched_spans(sink, make_sidecar):
    side = make_sidecar(processors=PIPELINE)
    send(side, [
        ("with-event", {"app.route": "/chat"}, [{"gen_ai.system": "xai", "llm.token_count.prompt": 3}]),
        ("plain", {"http.route": "/health", "http.response.status_code": 200}),
    ])
    spans = received(sink, 2)
    assert spans["with-event"].events == [("event", {"gen_ai.provider.name": "x_ai", "gen_ai.usage.input_tokens": 3})]
    plain = spans["plain"].attributes
    assert plain == {"http.route": "/health", "http.response.status_code": 200, "costctx.schema": "1",
                     "costctx.missing": plain["costctx.missing"]}
    assert metric_values(side, "renamed") == {("gen_ai.provider.name", "event"): 1.0,
                                              ("gen_ai.usage.input_tokens", "event"): 1.0}


def test_user_alias_file(sink, make_sidecar, tmp_path):
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text(
        "aliases:\n"
        "  - {from: app.tenant_id, to: owner.tenant}\n"
        "  - {from: traceloop.association.properties.tenant_id, to: owner.tenant}\n"
        "  - {from: traceloop.association.properties.user_id, to: owner.user}\n"
        # the user's rule wins over the built-in `enduser.id -> owner.user`
        "  - {from: enduser.id, to: owner.team}\n"
    )
    side = make_sidecar(processors=PIPELINE, processor_config={"normalize": {"alias_files": [str(aliases)]}})
    send(side, [
        ("app", {"app.tenant_id": "acme", "enduser.id": "payments"}),
        ("traceloop", {"traceloop.association.properties.tenant_id": "acme",
                       "traceloop.association.properties.user_id": "u-1", "traceloop.workflow.name": "chat"}),
    ], service="svc")
    send(side, [("on-resource", {})], service="svc2", resource_attributes={"app.tenant_id": "globex"})
    spans = received(sink, 3)
    app = spans["app"].attributes
    assert (app["owner.tenant"], app["owner.team"]) == ("acme", "payments")
    assert "app.tenant_id" not in app and "enduser.id" not in app
    traceloop = spans["traceloop"].attributes
    assert (traceloop["owner.tenant"], traceloop["owner.user"], traceloop["workflow.name"]) == ("acme", "u-1", "chat")
    assert set(traceloop["costctx.renamed"]) == {"owner.tenant", "owner.user", "workflow.name"}
    assert "owner.tenant" not in (traceloop.get("costctx.missing") or [])
    resource = spans["on-resource"].resource
    assert resource["owner.tenant"] == "globex" and "app.tenant_id" not in resource
    # the survival matrix counts these fields as `renamed` (a translation gap), not `present`
    counts = side.call(lambda: side.sidecar.survival.snapshot())
    assert counts[("svc", "owner.tenant", "renamed")] == 2
    assert counts[("svc", "workflow.name", "renamed")] == 1
    assert ("svc", "owner.tenant", "present") not in counts


SCHEMA_FILE = """\
file_format: 1.1.0
schema_url: https://opentelemetry.io/schemas/1.37.0
versions:
  1.37.0:
    all:
      changes:
        - rename_attributes:
            attribute_map:
              gen_ai.system: gen_ai.provider.name
  1.31.0:
  1.27.0:
    spans:
      changes:
        - rename_attributes:
            attribute_map:
              gen_ai.usage.prompt_tokens: gen_ai.usage.input_tokens
              gen_ai.usage.completion_tokens: gen_ai.usage.output_tokens
  1.26.0:
    all:
      changes:
        - rename_attributes:
            attribute_map:
              enduser.id: user.id
  1.25.0:
"""


def test_schema_file_with_allow_list(sink, make_sidecar, tmp_path):
    schema = tmp_path / "1.37.0.yaml"
    schema.write_text(SCHEMA_FILE)
    allow = ["gen_ai.system", "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens"]
    # the built-in table off, to see what the schema file alone does
    side = make_sidecar(processors=PIPELINE, processor_config={"normalize": {
        "builtin_aliases": False, "schema_files": [{"path": str(schema), "allow": allow}]}})
    old = {"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 4, "gen_ai.usage.completion_tokens": 2,
           "enduser.id": "u-1"}
    send(side, [("scope-1.25", old)], schema_url=SCHEMAS + "1.25.0")
    send(side, [("scope-1.30", old)], schema_url=SCHEMAS + "1.30.0")
    send(side, [("no-schema-url", old)])
    # the resource's schema_url counts when the scope has none
    provider = TracerProvider(resource=Resource({"service.name": "res"}, schema_url=SCHEMAS + "1.26.0"))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{side.sidecar.grpc_port}", insecure=True)))
    send(side, [("resource-1.26", old)], provider=provider)
    spans = received(sink, 4)

    v125 = spans["scope-1.25"].attributes
    assert v125["gen_ai.provider.name"] == "openai"
    assert (v125["gen_ai.usage.input_tokens"], v125["gen_ai.usage.output_tokens"]) == (4, 2)
    # 1.26.0 renamed enduser.id, 1.31.0 made it current again: not allow-listed, so kept
    assert v125["enduser.id"] == "u-1" and "user.id" not in v125
    assert set(v125["costctx.renamed"]) == {"gen_ai.provider.name", "gen_ai.usage.input_tokens",
                                            "gen_ai.usage.output_tokens"}
    v130 = spans["scope-1.30"].attributes
    assert v130["gen_ai.provider.name"] == "openai"
    assert v130["gen_ai.usage.prompt_tokens"] == 4  # written after 1.27.0: no such rename applies
    assert spans["resource-1.26"].attributes["gen_ai.usage.input_tokens"] == 4
    untouched = spans["no-schema-url"].attributes
    assert {k: untouched[k] for k in old} == old and "costctx.renamed" not in untouched


def test_schema_renames_limited_to_named_spans(sink, make_sidecar, tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        "file_format: 1.1.0\nschema_url: https://opentelemetry.io/schemas/1.30.0\nversions:\n"
        "  1.30.0:\n    spans:\n      changes:\n        - rename_attributes:\n"
        "            attribute_map: {app.prompt: gen_ai.usage.input_tokens}\n"
        "            apply_to_spans: [chat]\n"
        "  1.20.0:\n"
    )
    side = make_sidecar(processors=PIPELINE, processor_config={"normalize": {
        "schema_files": [{"path": str(schema), "allow": ["app.prompt"]}]}})
    send(side, [("chat", {"app.prompt": 5}), ("embed", {"app.prompt": 6})], schema_url=SCHEMAS + "1.20.0")
    spans = received(sink, 2)
    assert spans["chat"].attributes["gen_ai.usage.input_tokens"] == 5
    assert spans["embed"].attributes["app.prompt"] == 6 and "gen_ai.usage.input_tokens" not in spans["embed"].attributes


@pytest.mark.parametrize(("section", "message"), [
    ({"alias_files": ["/nonexistent/aliases.yaml"]}, "cannot read alias file /nonexistent/aliases.yaml"),
    ({"schema_files": [{"path": "SCHEMA", "allow": []}]}, "processors.normalize.schema_files.0.allow"),
    ({"schema_files": [{"path": "BADFORMAT", "allow": ["a"]}]}, "file_format '9.9.9' is not supported"),
    ({"alias_files": ["CYCLE"]}, "alias cycle: owner.user -> user.id -> owner.user"),
    ({"alias_files": ["BADENTRY"]}, "aliases[0]: `from` and `to` must be non-empty strings"),
    ({"colour": "blue"}, "processors.normalize.colour: unknown key"),
])
def test_bad_config_is_a_clear_error(tmp_path, section, message):
    files = {
        "SCHEMA": SCHEMA_FILE,
        "BADFORMAT": "file_format: 9.9.9\nschema_url: https://opentelemetry.io/schemas/1.0.0\n",
        "CYCLE": "aliases: {owner.user: user.id}\n",
        "BADENTRY": "aliases:\n  - {from: x}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    def resolve(value):
        if isinstance(value, str) and value in files:
            return str(tmp_path / value)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    config = sidecar_config(4317, processors=PIPELINE)
    config["processors"]["normalize"] = resolve(section)
    with pytest.raises(ConfigError) as error:
        build_config(config, environ={})
    assert message in str(error.value)


def test_later_processors_see_renamed_keys(sink, make_sidecar, tmp_path):
    """The price processor skips batches by searching the received bytes for `gen_ai.`:
    after a rename those bytes are stale, so normalize must not leave them behind."""
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("aliases: {app.model: gen_ai.request.model, app.tokens_in: gen_ai.usage.input_tokens,"
                       " app.tokens_out: gen_ai.usage.output_tokens, app.vendor: gen_ai.provider.name}\n")
    side = make_sidecar(processors=["normalize", "price", "envelope"],
                        processor_config={"normalize": {"alias_files": [str(aliases)]}})
    send(side, [("call", {"app.model": "gpt-4o-mini", "app.vendor": "openai", "app.tokens_in": 1_000_000,
                          "app.tokens_out": "1000000"})])
    attrs = received(sink, 1)["call"].attributes
    assert attrs["gen_ai.usage.output_tokens"] == 1_000_000
    assert attrs["cost.origin"] == "computed"
    assert attrs["cost.usd"] == pytest.approx(0.15 + 0.60)  # 1M tokens each way at the built-in price

"""Three real OpenAI instrumentation libraries, one canonical schema out of the sidecar.

Each library (OpenTelemetry's openai-v2, Arize's OpenInference, Traceloop's OpenLLMetry)
instruments the real `openai` client, which calls a stand-in chat-completions server on
loopback; the spans go through the real OTLP exporter to the sidecar and on to the sink.
"""

from __future__ import annotations

import importlib

import pytest

from costctx.normalize.alias_file import builtin_aliases
from tests.support.chat_server import RESPONSE_MODEL, USAGE, ChatServer
from tests.support.metrics import scrape
from tests.support.sdk import tracer_provider

openai = pytest.importorskip("openai")

LIBRARIES = {
    "openai-v2": "opentelemetry.instrumentation.openai_v2",
    "openinference": "openinference.instrumentation.openai",
    "openllmetry": "opentelemetry.instrumentation.openai",
}

# What every library's span must carry after the sidecar, whatever keys it was sent under.
COMMON = {
    "gen_ai.provider.name": "openai",
    "gen_ai.response.model": RESPONSE_MODEL,
    "gen_ai.usage.input_tokens": USAGE["prompt_tokens"],
    "gen_ai.usage.output_tokens": USAGE["completion_tokens"],
}
# Reported by some libraries only; where reported, under the canonical key with this value.
OPTIONAL = {
    "gen_ai.usage.cache_read.input_tokens": USAGE["prompt_tokens_details"]["cached_tokens"],
    "gen_ai.usage.reasoning.output_tokens": USAGE["completion_tokens_details"]["reasoning_tokens"],
    "gen_ai.usage.total_tokens": USAGE["total_tokens"],
}
ALIAS_KEYS = {a.old for a in builtin_aliases().aliases if not a.fallback}


def run_instrumented_call(library: str, grpc_port: int) -> None:
    instrumentor_class = importlib.import_module(LIBRARIES[library]).OpenAIInstrumentor
    provider = tracer_provider(grpc_port=grpc_port, service=f"app-{library}", batch=False)
    instrumentor = instrumentor_class()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with ChatServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello."}]
            )
            assert reply.usage.prompt_tokens == USAGE["prompt_tokens"]
            assert len(server.requests) == 1
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def llm_span(sink, library: str):
    assert sink.wait_for_spans(1)
    spans = [s for s in sink.spans() if s.service == f"app-{library}"]
    assert len(spans) == 1, [s.name for s in sink.spans()]
    return spans[0]


# Which canonical keys each library sends under an old or foreign name (as of the versions
# pinned in pyproject.toml): exactly these must be stamped in `costctx.renamed`.
RENAMED = {
    "openai-v2": set(),
    "openllmetry": {"gen_ai.usage.reasoning.output_tokens", "openai.response.system_fingerprint"},
    "openinference": {
        "gen_ai.provider.name", "gen_ai.response.model", "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens", "gen_ai.usage.total_tokens",
        "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.reasoning.output_tokens",
    },
}


@pytest.fixture(scope="module")
def canonical_by_library() -> dict:
    return {}


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_library_spans_leave_with_canonical_keys(library, sink, make_sidecar, canonical_by_library):
    side = make_sidecar(processors=["normalize", "envelope"])
    run_instrumented_call(library, side.sidecar.grpc_port)
    span = llm_span(sink, library)
    attrs = span.attributes

    for key, value in COMMON.items():
        assert attrs.get(key) == value, (library, key, attrs.get(key))
        assert type(attrs[key]) is type(value), (library, key)
    for key, value in OPTIONAL.items():
        if key in attrs:
            assert attrs[key] == value, (library, key)
    leftover = ALIAS_KEYS & set(attrs)
    assert not leftover, f"{library} still carries old keys {leftover}"
    # A key that arrived under an old name is listed; one that arrived canonical is not.
    assert set(attrs.get("costctx.renamed", [])) == RENAMED[library]
    canonical_by_library[library] = {k: attrs[k] for k in [*COMMON, *OPTIONAL] if k in attrs}


def test_libraries_agree(canonical_by_library):
    """Runs after the parametrized test above: every library gives the same canonical facts."""
    if len(canonical_by_library) < len(LIBRARIES):
        pytest.skip("needs every library's span from the test above")
    common = [{k: v[k] for k in COMMON} for v in canonical_by_library.values()]
    assert all(c == common[0] for c in common)
    # OpenInference sends every token count under its own keys: all of them were renamed.
    assert canonical_by_library["openinference"] == {**COMMON, **OPTIONAL}


def test_openinference_renames_count_as_renamed_outcomes(sink, make_sidecar):
    side = make_sidecar(processors=["normalize", "envelope"])
    run_instrumented_call("openinference", side.sidecar.grpc_port)
    span = llm_span(sink, "openinference")
    # OpenInference's own keys with no canonical counterpart pass through untouched.
    assert span.attributes["openinference.span.kind"] == "LLM"
    renamed = {
        sample.labels["key"]: sample.value
        for sample in scrape(side, "costctx_normalize_renamed_total")
        if sample.labels["where"] == "span"
    }
    assert renamed == dict.fromkeys(RENAMED["openinference"], 1.0)


def test_without_normalize_the_libraries_disagree(sink, make_sidecar):
    """The baseline the processor fixes: the same call, different keys per library."""
    side = make_sidecar(processors=["envelope"])
    run_instrumented_call("openinference", side.sidecar.grpc_port)
    attrs = llm_span(sink, "openinference").attributes
    assert "gen_ai.usage.input_tokens" not in attrs
    assert attrs["llm.token_count.prompt"] == USAGE["prompt_tokens"]

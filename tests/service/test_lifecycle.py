"""Every registered processor type, twice in one pipeline (`t` and `t/b`): built, started, fed
real spans through to a sink, and shut down. A new type in the registry is covered as added."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costctx.cli.sink import OtlpSink
from costctx.service.registry import EXPORTER_TYPES, PROCESSOR_TYPES
from tests.support.metrics import metric
from tests.support.sdk import tracer_provider
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.support.wait import wait_until

# The smallest valid section of a type whose config has required keys; every other type is
# configured with an empty section (its defaults). A new type with required keys fails below
# with a message saying to add it here.
MINIMAL_SECTIONS: dict[str, dict] = {
    "memory_limiter": {"limit_mib": 1_000_000, "check_interval": "50ms"},
}

# A span of each kind a processor acts on: a model call with usage and the envelope, a child
# without the envelope (inherit repairs it), an old key (normalize renames it).
SPANS = 3


def _feed(grpc_port: int) -> None:
    provider = tracer_provider(grpc_port=grpc_port, batch=False)
    tracer = provider.get_tracer("lifecycle")
    with tracer.start_as_current_span("workflow") as root:
        root.set_attribute("workflow.id", "wf-lifecycle")
        root.set_attribute("workflow.name", "lifecycle")
        root.set_attribute("owner.tenant", "acme")
        with tracer.start_as_current_span("chat gpt-4o") as call:
            call.set_attribute("gen_ai.request.model", "gpt-4o")
            call.set_attribute("gen_ai.usage.input_tokens", 100)
            call.set_attribute("gen_ai.usage.output_tokens", 20)
        with tracer.start_as_current_span("tool") as tool:
            tool.set_attribute("llm.token_count.prompt", 5)
    provider.shutdown()


# Types whose metrics exist from the start (gauges set at construction), so both ids must show.
ALWAYS_LABELLED = {"budget", "inherit", "limits", "memory_limiter", "price"}


def _check_labelled_by_id(admin_port: int, type_name: str, names: list[str]) -> None:
    """Every sample of the type's own metrics names the instance it came from."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    own = [s for f in text_string_to_metric_families(text) if f.name.startswith(f"costctx_{type_name}_")
           for s in f.samples]
    assert all(s.labels.get("processor") in names for s in own), [s for s in own if "processor" not in s.labels]
    if type_name in ALWAYS_LABELLED:
        assert {s.labels["processor"] for s in own} == set(names)


@pytest.mark.parametrize("type_name", sorted(PROCESSOR_TYPES))
def test_every_processor_type_twice_in_one_pipeline(type_name: str, sink: OtlpSink) -> None:
    names = [type_name, f"{type_name}/b"]
    section = MINIMAL_SECTIONS.get(type_name)
    config = sidecar_config(sink.grpc_port, processors=names, processor_config={n: section for n in names})
    try:
        runner = start_sidecar(config)
    except Exception as exc:  # pragma: no cover - the message is the point
        raise AssertionError(
            f"{type_name} and {type_name}/b could not start together ({exc!r}); if its config has "
            "required keys, add its smallest valid section to MINIMAL_SECTIONS"
        ) from exc
    try:
        _feed(runner.sidecar.grpc_port)
        assert sink.wait_for_spans(SPANS), f"{type_name}: {sink.span_count()} of {SPANS} spans reached the sink"
        for name in names:
            assert metric(runner, "costctx_processor_errors_total", processor=name) == 0
        _check_labelled_by_id(runner.sidecar.admin_port, type_name, names)
    finally:
        runner.stop()
    assert sink.span_count() == SPANS  # nothing duplicated or lost on shutdown


# Exporters that deliver nowhere (debug logs what it would send): counted as sent, never at the sink.
SENDS_NOWHERE: dict[str, dict] = {"debug": {"verbosity": "normal"}}


def _exporter_section(type_name: str, sink: OtlpSink) -> dict:
    if type_name in SENDS_NOWHERE:
        return dict(SENDS_NOWHERE[type_name])
    endpoints = {"otlp": {"endpoint": f"127.0.0.1:{sink.grpc_port}", "insecure": True},
                 "otlphttp": {"endpoint": f"http://127.0.0.1:{sink.http_port}"}}
    try:
        return {**endpoints[type_name], "retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms"}}
    except KeyError:
        raise AssertionError(f"exporter type {type_name}: say how it reaches the sink in _exporter_section") from None


@pytest.mark.parametrize("type_name", sorted(EXPORTER_TYPES))
def test_every_exporter_type_twice_in_one_pipeline(type_name: str, sink: OtlpSink) -> None:
    """`t` and `t/b` both deliver every span: the sink sees each one twice, counted per exporter id."""
    names = [type_name, f"{type_name}/b"]
    config = sidecar_config(sink.grpc_port, processors=[])
    config["exporters"] = {name: _exporter_section(type_name, sink) for name in names}
    for pipeline in config["service"]["pipelines"].values():
        pipeline["exporters"] = names
    delivers = type_name not in SENDS_NOWHERE
    runner = start_sidecar(config)
    try:
        _feed(runner.sidecar.grpc_port)
        if delivers:
            assert sink.wait_for_spans(2 * SPANS), f"{sink.span_count()} of {2 * SPANS} spans reached the sink"
        for name in names:
            assert wait_until(
                lambda name=name: metric(runner, "costctx_exporter_sent_items_total", signal="traces",
                                         exporter=name) == SPANS
            ), name
    finally:
        runner.stop()
    assert sink.span_count() == (2 * SPANS if delivers else 0)

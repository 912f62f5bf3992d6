"""The price processor end to end: a real OpenTelemetry SDK -> a real sidecar -> a real sink."""

from __future__ import annotations

import logging
import os
import shutil
import urllib.request
from decimal import Decimal

import pytest

from costctx.pricing.money import from_usd, rate_from_per_million
from tests.support.metrics import metric
from tests.support.paths import FIXTURES
from tests.support.processors import standalone_processor
from tests.support.sdk import tracer_provider
from tests.support.sidecar import sidecar_config
from tests.support.wait import wait_until

FIXTURE = FIXTURES / "litellm_model_prices.json"
PIPELINE = ["price", "envelope"]


def llm_span(tracer, name: str, **attributes) -> None:
    with tracer.start_as_current_span(name) as span:
        for key, value in attributes.items():
            span.set_attribute(key, value)


def send(runner, sink, spans: list[dict], batch_size: int = 512) -> dict[str, dict]:
    """Send spans (name -> attributes) through the sidecar; return what the sink got, by span name."""
    before = sink.span_count()
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, max_export_batch_size=batch_size,
                               schedule_delay_millis=10)
    tracer = provider.get_tracer("test")
    for attrs in spans:
        attrs = dict(attrs)
        llm_span(tracer, attrs.pop("name"), **attrs)
    provider.force_flush()
    provider.shutdown()
    assert sink.wait_for_spans(before + len(spans))
    return {s.name: s.attributes for s in sink.spans()}


@pytest.fixture
def pipeline(make_sidecar):
    return make_sidecar(processors=PIPELINE)


def test_workflow_total_across_many_batches_is_the_exact_sum(pipeline, sink):
    # 60 calls in batches of 4 (15 export requests), with amounts like $0.1 that floats cannot sum.
    # gpt-4o-mini: input $0.15/M, cache read $0.075/M, output $0.60/M.
    rates = {k: rate_from_per_million(v) for k, v in {"in": "0.15", "cached": "0.075", "out": "0.60"}.items()}
    spans, expected = [], []
    for i in range(60):
        tokens_in, cached, tokens_out = 1_000 + 37 * i, 13 * i, 333 + i
        spans.append({"name": f"call-{i:02d}", "workflow.id": "wf-exact", "gen_ai.provider.name": "openai",
                      "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": tokens_in,
                      "gen_ai.usage.cache_read.input_tokens": cached, "gen_ai.usage.output_tokens": tokens_out})
        expected.append((tokens_in - cached) * rates["in"] + cached * rates["cached"] + tokens_out * rates["out"])
    spans.append({"name": "tool-call", "workflow.id": "wf-exact"})          # not a model call
    got = send(pipeline, sink, spans, batch_size=4)

    running = 0
    for i, pico in enumerate(expected):
        attrs = got[f"call-{i:02d}"]
        assert attrs["cost.origin"] == "computed"
        assert attrs["cost.price_source"].startswith("builtin@2026-11-01#")
        assert from_usd(attrs["cost.usd"]) == pico                  # this call's own cost, exactly
        running += pico
        assert from_usd(attrs["workflow.spend_total_usd"]) == running  # running total, this span included
    last = got["call-59"]["workflow.spend_total_usd"]
    assert from_usd(last) == sum(from_usd(got[f"call-{i:02d}"]["cost.usd"]) for i in range(60))
    assert last == float(Decimal(sum(expected)) / 10**12)
    assert "cost.usd" not in got["tool-call"] and "workflow.spend_total_usd" not in got["tool-call"]
    assert "cost.usd" not in got["tool-call"].get("costctx.missing", [])


def test_reported_cost_is_kept_and_drift_counted(pipeline, sink):
    # Computed for gpt-4o 1,000 in / 1,000 out: $0.0025 + $0.01 = $0.0125.
    got = send(pipeline, sink, [
        {"name": "reported-high", "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000,
         "gen_ai.usage.output_tokens": 1_000, "gen_ai.usage.cost": 0.5, "workflow.id": "wf-r"},
        {"name": "reported-equal", "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000,
         "gen_ai.usage.output_tokens": 1_000, "llm.cost.total": 0.0125, "workflow.id": "wf-r"},
    ])
    high = got["reported-high"]
    assert (high["cost.usd"], high["cost.origin"]) == (0.5, "reported")
    assert high["cost.price_source"] == "reported:gen_ai.usage.cost"
    assert got["reported-equal"]["cost.price_source"] == "reported:llm.cost.total"
    assert got["reported-equal"]["workflow.spend_total_usd"] == 0.5125   # reported amounts are spend too
    assert metric(pipeline, "costctx_price_reported_compared_spans_total") == 2
    assert metric(pipeline, "costctx_price_reported_drift_spans_total", model="gpt-4o") == 1
    assert metric(pipeline, "costctx_price_reported_drift_usd_total") == pytest.approx(0.4875)


def test_unknown_model_and_missing_tokens_are_listed_counted_and_warned_once(pipeline, sink, caplog):
    caplog.set_level(logging.WARNING, logger="costctx.processor")
    mystery = {"gen_ai.request.model": "mystery-model-9", "gen_ai.usage.input_tokens": 10,
               "gen_ai.usage.output_tokens": 10, "workflow.id": "wf-m"}
    got = send(pipeline, sink, [
        {"name": "m1", **mystery}, {"name": "m2", **mystery}, {"name": "m3", **mystery},
        {"name": "no-tokens", "gen_ai.request.model": "gpt-4o", "workflow.id": "wf-m"},
        {"name": "embedding", "gen_ai.request.model": "text-embedding-3-small", "gen_ai.operation.name": "embeddings",
         "gen_ai.usage.input_tokens": 1_000_000},
    ])
    for name in ("m1", "m2", "m3", "no-tokens"):
        assert "cost.usd" not in got[name] and "workflow.spend_total_usd" not in got[name]
        assert "cost.usd" in got[name]["costctx.missing"]
    assert got["embedding"]["cost.usd"] == 0.02                 # 1M x $0.02/M; no output count needed
    assert metric(pipeline, "costctx_price_misses_total", model="mystery-model-9", reason="unknown_model") == 3
    assert metric(pipeline, "costctx_price_misses_total", model="gpt-4o", reason="missing_tokens") == 1
    warnings = [r for r in caplog.records if "mystery-model-9" in r.getMessage()]
    assert len(warnings) == 1


def test_model_labels_on_misses_are_bounded(make_sidecar, sink):
    runner = make_sidecar(processors=PIPELINE, processor_config={"price": {"max_model_labels": 1}})
    send(runner, sink, [{"name": f"m{i}", "gen_ai.request.model": f"mystery-{i}", "gen_ai.usage.input_tokens": 10,
                         "gen_ai.usage.output_tokens": 10} for i in range(3)])
    assert metric(runner, "costctx_price_misses_total", model="mystery-0", reason="unknown_model") == 1
    assert metric(runner, "costctx_price_misses_total", model="other", reason="unknown_model") == 2


def _start_with_sources(make_sidecar, tmp_path, overrides_text: str):
    litellm_path = tmp_path / "model_prices_and_context_window.json"
    shutil.copy(FIXTURE, litellm_path)
    overrides_path = tmp_path / "prices.yaml"
    overrides_path.write_text(overrides_text)
    price = {
        "sources": ["builtin", {"type": "litellm", "path": str(litellm_path), "version": "2026-11-15"},
                    {"type": "overrides", "path": str(overrides_path)}],
        "reload_interval": "50ms",
    }
    return make_sidecar(processors=PIPELINE, processor_config={"price": price}), overrides_path


def _replace(path, text: str) -> None:
    """Swap the file's content in one step, as a ConfigMap update does (a write in place can be
    read half-written by the watcher: a failed reload that is not the one the test makes)."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    os.replace(staged, path)


def test_sources_layer_and_reload_on_change_keeping_the_last_good_table(sink, make_sidecar, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="costctx.pricing")
    runner, overrides_path = _start_with_sources(
        make_sidecar, tmp_path,
        "version: negotiated-1\nproviders:\n  openai:\n    gpt-4o: {input: 2.00, output: 8.00}\n")
    call = {"gen_ai.provider.name": "openai", "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 1_000}
    fixture_call = {"gen_ai.response.model": "acme-internal-llama-70b", "gen_ai.usage.input_tokens": 1_000_000,
                    "gen_ai.usage.output_tokens": 1_000_000}
    got = send(runner, sink, [{"name": "v1", **call}, {"name": "litellm-row", **fixture_call}])
    # Override beats both the built-in table and the LiteLLM file: 1,000 x $2/M + 1,000 x $8/M = $0.010
    assert got["v1"]["cost.usd"] == 0.01
    assert got["v1"]["cost.price_source"].startswith("overrides@negotiated-1#")
    # A row only the LiteLLM file has: 1M x $0.17/M + 1M x $0.23/M = $0.40
    assert got["litellm-row"]["cost.usd"] == 0.4
    assert got["litellm-row"]["cost.price_source"].startswith("litellm@2026-11-15#")

    # The file changes on disk: picked up without a restart, with a new content hash.
    _replace(overrides_path,
             "version: negotiated-2\nproviders:\n  openai:\n    gpt-4o: {input: 1.00, output: 4.00}\n")
    assert wait_until(lambda: metric(runner, "costctx_price_reloads_total", source="overrides") >= 2)
    got = send(runner, sink, [{"name": "v2", **call}])
    assert got["v2"]["cost.usd"] == 0.005                    # 1,000 x $1/M + 1,000 x $4/M
    assert got["v2"]["cost.price_source"].startswith("overrides@negotiated-2#")

    # A broken file: the last good table stays, and the log says why.
    failures = metric(runner, "costctx_price_reload_failures_total", source="overrides")
    _replace(overrides_path, "providers:\n  openai:\n    gpt-4o: {input: 1.00}\n")
    assert wait_until(lambda: metric(runner, "costctx_price_reload_failures_total", source="overrides")
                      >= failures + 1)
    got = send(runner, sink, [{"name": "v3", **call}])
    assert got["v3"]["cost.usd"] == 0.005
    assert got["v3"]["cost.price_source"] == got["v2"]["cost.price_source"]
    assert any("missing 'output'" in r.getMessage() and "keeping overrides@negotiated-2" in r.getMessage()
               for r in caplog.records)


def test_price_book_and_ledger_shared_through_the_host(pipeline):
    book, ledger = pipeline.call(lambda: (pipeline.sidecar.host.price_book,
                                          pipeline.sidecar.host.spend_ledger))
    est = pipeline.call(book.estimate, "gpt-4o", 1_000, 1_000)
    assert est.pico == 12_500_000_000 and est.source.startswith("builtin@")
    assert pipeline.call(ledger.total, "never-seen") == 0


def test_bad_config_is_rejected_with_the_key(sink):
    from costctx.service.config.loader import ConfigError, build_config

    config = sidecar_config(sink.grpc_port, processors=PIPELINE)
    config["processors"]["price"] = {"sources": [{"type": "litellm"}]}
    with pytest.raises(ConfigError, match=r"processors.price.sources.0: .*needs a path"):
        build_config(config, environ={})


def _request(spans: list[tuple[bytes, dict]]) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from costctx.pdata.attributes import set_any_value

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span_id, attrs in spans:
        span = scope.spans.add(trace_id=b"\x01" * 16, span_id=span_id, name=span_id.hex())
        for key, value in attrs.items():
            kv = span.attributes.add(key=key)
            set_any_value(kv.value, value)
    return request.SerializeToString()


def _post(runner, body: bytes) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{runner.sidecar.http_port}/v1/traces", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
    assert urllib.request.urlopen(request, timeout=5).status == 200


def test_a_resent_batch_is_not_counted_twice_in_the_running_total(pipeline, sink):
    # A client that timed out resends the same request: same trace and span ids.
    call = {"workflow.id": "wf-resend", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000,
            "gen_ai.usage.output_tokens": 1_000}                       # $0.0125 each
    body = _request([(b"\x00" * 7 + b"\x01", call), (b"\x00" * 7 + b"\x02", call)])
    _post(pipeline, body)
    _post(pipeline, body)
    _post(pipeline, _request([(b"\x00" * 7 + b"\x03", call)]))
    assert sink.wait_for_spans(5)
    totals = [s.attributes["workflow.spend_total_usd"] for s in sink.spans()]
    assert max(totals) == 0.0375                                        # 3 distinct calls, not 5
    assert all(s.attributes["cost.usd"] == 0.0125 for s in sink.spans())
    assert metric(pipeline, "costctx_price_duplicate_spans_total") == 2


def test_spans_without_valid_ids_each_count_in_the_running_total(pipeline, sink):
    # All-zero span ids cannot tell spans apart, so none may pass for another's resend.
    call = {"workflow.id": "wf-noids", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000,
            "gen_ai.usage.output_tokens": 1_000}                       # $0.0125 each
    _post(pipeline, _request([(bytes(8), call), (bytes(8), call), (bytes(8), call)]))
    assert sink.wait_for_spans(3)
    totals = sorted(s.attributes["workflow.spend_total_usd"] for s in sink.spans())
    assert totals == [0.0125, 0.025, 0.0375]                            # 3 calls counted, not 1
    assert not metric(pipeline, "costctx_price_duplicate_spans_total")


def test_keys_renamed_by_an_earlier_processor_are_priced_even_if_the_received_bytes_lack_them():
    # normalize renames e.g. OpenInference llm.token_count.* in the index; batch.raw still holds
    # the bytes as received. The price processor must go by the index, not the raw bytes.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from costctx.pdata import TraceBatch

    body = _request([(b"\x00" * 7 + b"\x09", {"vendor.model": "gpt-4o", "vendor.in": 1_000, "vendor.out": 1_000})])
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    batch = TraceBatch(request, raw=body)
    rec = batch.records[0]
    for old, new in [("vendor.model", "gen_ai.request.model"), ("vendor.in", "gen_ai.usage.input_tokens"),
                     ("vendor.out", "gen_ai.usage.output_tokens")]:
        rec.rename(old, new)                                   # what normalize does
    standalone_processor("price").process(batch)
    assert rec.get_double("cost.usd") == 0.0125


def test_tick_reloads_without_an_event_loop_and_counts_failures(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  house: {input: 1, output: 1}\n")
    proc = standalone_processor("price", sources=["builtin", {"type": "overrides", "path": str(prices)}],
                                reload_interval="1s")
    assert proc.book.estimate("house", 1_000_000, 0).pico == 10**12          # $1
    prices.write_text("models:\n  house: {input: 3, output: 1}\n")
    proc.tick(0.5)                                             # checks once, then every reload_interval
    assert proc.book.estimate("house", 1_000_000, 0).pico == 3 * 10**12
    prices.write_text("models: [not, a, mapping]\n")
    proc.tick(1.0)                                             # too soon: not checked yet
    assert proc.metrics.reload_failures.labels("overrides")._value.get() == 0
    proc.tick(1.6)
    assert proc.metrics.reload_failures.labels("overrides")._value.get() == 1
    assert proc.book.estimate("house", 1_000_000, 0).pico == 3 * 10**12       # last good table kept
    proc.tick(2.7)                                             # the same broken file: not reported again
    assert proc.metrics.reload_failures.labels("overrides")._value.get() == 1
    prices.unlink()                                            # a deleted file: also kept, also counted
    proc.tick(4.0)
    assert proc.metrics.reload_failures.labels("overrides")._value.get() == 2
    assert proc.book.estimate("house", 1_000_000, 0).pico == 3 * 10**12


def test_token_strings_that_are_not_numbers_leave_the_span_unpriced_not_the_batch():
    # str.isdigit() holds for "²" and for digit runs int() refuses (over 4,300 digits).
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from costctx.pdata import TraceBatch
    from costctx.pdata.attributes import string_array

    call = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.output_tokens": 1_000}
    body = _request([(b"\x00" * 7 + b"\x01", {**call, "gen_ai.usage.input_tokens": "\u00b2"}),
                     (b"\x00" * 7 + b"\x02", {**call, "gen_ai.usage.input_tokens": "9" * 5_000}),
                     (b"\x00" * 7 + b"\x03", {**call, "gen_ai.usage.input_tokens": 1_000})])
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    batch = TraceBatch(request)
    standalone_processor("price").process(batch)
    first, second, good = batch.records
    for unpriced in (first, second):
        assert unpriced.get_double("cost.usd") is None
        assert string_array(unpriced.attrs["costctx.missing"].value) == ["cost.usd"]
    assert good.get_double("cost.usd") == 0.0125


def test_an_absurd_reported_cost_is_kept_and_the_batch_still_priced():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from costctx.pdata import TraceBatch

    call = {"workflow.id": "wf-absurd", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000,
            "gen_ai.usage.output_tokens": 1_000}
    body = _request([(b"\x00" * 7 + b"\x01", {**call, "gen_ai.usage.cost": 1.7e308}),
                     (b"\x00" * 7 + b"\x02", {**call, "gen_ai.usage.cost": 1.7e308}),
                     (b"\x00" * 7 + b"\x03", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000,
                                                 "gen_ai.usage.output_tokens": 1_000})])
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    batch = TraceBatch(request)
    standalone_processor("price").process(batch)
    first, second, good = batch.records
    assert first.get_double("cost.usd") == 1.7e308 and first.get_str("cost.origin") == "reported"
    assert second.get_double("workflow.spend_total_usd") == float("inf")   # past the largest double
    assert good.get_double("cost.usd") == 0.0125


def test_bounded_tables_forgetting_is_exported(make_sidecar, sink):
    """The spend ledger's totals and dedupe tables forget past their size bounds; how many is on
    /metrics (read from the tables at scrape time), not only in a log line."""
    runner = make_sidecar(processors=PIPELINE, processor_config={"price": {"spend_table_size": 2, "dedupe_size": 4}})
    labels = {"processor": "price"}
    assert metric(runner, "costctx_table_forgotten_total", table="spend_totals", reason="evicted", **labels) == 0
    call = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10}
    send(runner, sink, [{"name": f"c{i}", "workflow.id": f"wf-{i}", **call} for i in range(12)], batch_size=3)
    ledger = next(p for p in runner.sidecar.traces.processors if p.name == "price").ledger
    totals = metric(runner, "costctx_table_forgotten_total", table="spend_totals", reason="evicted", **labels)
    dedupe = metric(runner, "costctx_table_forgotten_total", table="spend_dedupe", reason="evicted", **labels)
    assert totals == ledger.evicted > 0
    assert dedupe == ledger.dedupe_table.evicted > 0

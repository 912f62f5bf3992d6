"""`costctx price`: a cost with the rates and the source that produced it."""

from __future__ import annotations

import pytest

from costctx.cli.main import main


def test_price_prints_rates_source_and_exact_cost(capsys):
    # gpt-4o-2024-08-06 -> gpt-4o: 6,000 x $2.50/M + 4,000 x $1.25/M + 500 x $10/M = $0.025
    code = main(["price", "--model", "gpt-4o-2024-08-06", "--input", "10000", "--cache-read", "4000",
                 "--output", "500"])
    out = capsys.readouterr().out
    assert code == 0
    assert "gpt-4o (dated snapshot)" in out
    assert "builtin@2026-11-01#" in out
    assert "input (uncached): 6000 tokens x $2.5/M = $0.015" in out
    assert "cache read: 4000 tokens x $1.25/M = $0.005" in out
    assert out.rstrip().endswith("cost.usd  $0.025")


def test_price_uses_the_configured_sources(tmp_path, capsys):
    overrides = tmp_path / "prices.yaml"
    overrides.write_text("version: negotiated\nmodels:\n  acme-llama-70b: {input: 0.20, output: 0.40}\n")
    config = tmp_path / "costctx.yaml"
    config.write_text(f"""
processors:
  price:
    sources: [builtin, {{type: overrides, path: {overrides}}}]
    aliases: {{house-model: acme-llama-70b}}
  envelope:
exporters:
  otlp: {{endpoint: "127.0.0.1:4999", insecure: true}}
service:
  pipelines:
    traces: {{processors: [price, envelope], exporters: [otlp]}}
""")
    # 1M x $0.20/M + 500k x $0.40/M = $0.20 + $0.20 = $0.40
    code = main(["price", "--config", str(config), "--model", "house-model", "--input", "1000000",
                 "--output", "500000"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "overrides@negotiated#" in out and "alias house-model -> acme-llama-70b" in out
    assert out.rstrip().endswith("$0.4")


def test_unknown_model_exits_1_and_says_what_was_tried(capsys):
    assert main(["price", "--model", "openai/mystery-2025-01-01", "--input", "1", "--output", "1"]) == 1
    err = capsys.readouterr().err
    assert "no price for 'openai/mystery-2025-01-01'" in err and "mystery" in err


def _price_span(**counts: int) -> dict:
    """One span priced by a standalone price processor; its attributes after."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from costctx.pdata import TraceBatch
    from costctx.pdata.attributes import any_value_to_python, set_any_value
    from tests.support.processors import standalone_processor

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "chat"
    for key, value in {"gen_ai.request.model": "gpt-4o", **counts}.items():
        kv = span.attributes.add()
        kv.key = key
        set_any_value(kv.value, value)
    standalone_processor("price").process(TraceBatch(request))
    return {kv.key: any_value_to_python(kv.value) for kv in span.attributes}


@pytest.mark.parametrize("flag", ["--input", "--output", "--cache-read", "--cache-creation", "--reasoning"])
def test_price_refuses_a_negative_count(flag, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["price", "--model", "gpt-4o", "--input", "100", "--output", "100", flag, "-5"])
    captured = capsys.readouterr()
    assert refused.value.code == 2
    assert "-5 is not a token count" in captured.err and "cost.usd" not in captured.out


@pytest.mark.parametrize("key", ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"])
def test_a_span_with_a_negative_count_is_left_unpriced_as_the_cli_refuses(key):
    counts = {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 100}
    assert _price_span(**counts)["cost.usd"] == pytest.approx(100 * 2.5e-6 + 100 * 10e-6)  # gpt-4o rates
    attributes = _price_span(**{**counts, key: -5})
    assert "cost.usd" not in attributes and attributes["costctx.missing"] == ["cost.usd"]

"""Price history: dated prices, re-pricing a recorded span exactly, the newest usage keys.

Spans go through a real sidecar with the real OpenTelemetry SDK; re-pricing goes through the
`costctx price` command as a user would run it."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from costctx.cli.main import build_parser
from costctx.cli.price import price_command
from costctx.pricing.archive import ArchivedVersion, PriceArchive
from costctx.pricing.book import PriceBook
from costctx.pricing.calc import Usage
from costctx.pricing.litellm import parse_litellm
from costctx.pricing.money import from_usd, rate_from_per_million
from costctx.pricing.table import full_digest, parse_instant
from costctx.pricing.yaml_table import parse_yaml_table
from costctx.service.config.loader import build_config
from tests.support.metrics import metric
from tests.support.sdk import tracer_provider
from tests.support.wait import wait_until

NS = 1_000_000_000
HOUR = 3600 * NS
PIPELINE = ["price", "envelope"]
CALL = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "acme-chat",
        "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 1_000}


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // NS))


def send_at(runner, sink, spans: list[tuple[str, int, dict]]) -> dict[str, dict]:
    """Spans (name, start time in unix ns, attributes) through the sidecar; what the sink got, by name."""
    before = sink.span_count()
    provider = tracer_provider(grpc_port=runner.sidecar.grpc_port, schedule_delay_millis=10)
    tracer = provider.get_tracer("test")
    for name, start, attributes in spans:
        span = tracer.start_span(name, start_time=start, attributes=attributes)
        span.end(end_time=start + NS)
    provider.force_flush()
    provider.shutdown()
    assert sink.wait_for_spans(before + len(spans))
    return {s.name: s.attributes for s in sink.spans()}


def run_price(*argv: str, config=None) -> tuple[int, str]:
    args = build_parser().parse_args(["price", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = price_command(args, config, out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def explain(attributes: dict, *argv: str, config=None, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / f"span-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(attributes))
    return run_price("--explain-span", str(path), *argv, config=config)


def two_period_table(change_ns: int, before: tuple[str, str], after: tuple[str, str], version: str) -> str:
    (in1, out1), (in2, out2) = before, after
    return (f"version: {version}\nmodels:\n  acme-chat:\n"
            f"    - {{until: {_iso(change_ns)}, input: {in1}, output: {out1}}}\n"
            f"    - {{from: {_iso(change_ns)}, input: {in2}, output: {out2}}}\n")


@pytest.fixture
def dated_sidecar(make_sidecar, tmp_path):
    """A sidecar whose override file changes acme-chat's price 10 minutes ago, archiving to disk."""
    now = time.time_ns()
    change = now - now % NS - 600 * NS
    if (change // NS) % 60 == 0:      # keep a seconds part, so the period id's text is the full form below
        change -= NS
    prices = tmp_path / "prices.yaml"
    prices.write_text(two_period_table(change, ("3.00", "12.00"), ("2.00", "8.00"), "v1"))
    history = tmp_path / "history"
    price = {"sources": ["builtin", {"type": "overrides", "path": str(prices)}], "reload_interval": "50ms",
             "history": {"directory": str(history)}}
    runner = make_sidecar(processors=PIPELINE, processor_config={"price": price})
    return runner, change, prices, history, price


def test_each_span_of_a_workflow_is_priced_at_its_own_periods_price(dated_sidecar, sink, tmp_path):
    runner, change, prices, history, _ = dated_sidecar
    got = send_at(runner, sink, [("before", change - 300 * NS, {**CALL, "workflow.id": "wf-dated"}),
                                 ("after", change + 300 * NS, {**CALL, "workflow.id": "wf-dated"})])
    # before: 1,000 x $3/M + 1,000 x $12/M = $0.015; after: 1,000 x $2/M + 1,000 x $8/M = $0.010
    assert got["before"]["cost.usd"] == 0.015
    assert got["after"]["cost.usd"] == 0.01
    assert got["before"]["cost.price_source"].endswith(f"/acme-chat@..{_iso(change)}")
    assert got["after"]["cost.price_source"].endswith(f"/acme-chat@{_iso(change)}..")
    assert got["before"]["cost.price_source"].split("/")[0] == got["after"]["cost.price_source"].split("/")[0]
    assert max(got["before"]["workflow.spend_total_usd"], got["after"]["workflow.spend_total_usd"]) == 0.025
    assert not metric(runner, "costctx_price_start_time_outside_tolerance_spans_total")

    # The file changes (both periods re-priced, a new version): new spans use it...
    prices.write_text(two_period_table(change, ("4.00", "16.00"), ("1.00", "4.00"), "v2"))
    assert wait_until(lambda: metric(runner, "costctx_price_reloads_total", source="overrides") >= 2)
    later = send_at(runner, sink, [("after-reload", change + 400 * NS, CALL)])
    assert later["after-reload"]["cost.usd"] == 0.005
    # ...and the spans priced before re-price, from their recorded price source, to the pico-dollar,
    # in a new process reading only the archive directory (the sidecar's table has moved on).
    for name, expected in (("before", "0.015"), ("after", "0.01")):
        recorded = got[name]
        code, text = explain(recorded, "--history", str(history), tmp_path=tmp_path)
        assert code == 0, text
        assert "matches" in text
        code, text = run_price("--model", "acme-chat", "--input", "1000", "--output", "1000",
                               "--source", recorded["cost.price_source"], "--history", str(history))
        assert code == 0, text
        assert f"cost.usd  ${expected}" in text
        assert recorded["cost.price_source"] in text


def test_a_span_outside_the_tolerance_is_priced_at_the_current_price_and_counted(dated_sidecar, sink):
    runner, change, *_ = dated_sidecar
    # Stamped two days back, where the old (dearer or cheaper, whichever a forger wants) price ran.
    got = send_at(runner, sink, [("forged", change - 48 * HOUR, CALL)])
    assert got["forged"]["cost.usd"] == 0.01                       # today's $2 / $8, not $3 / $12
    assert got["forged"]["cost.price_source"].endswith(f"/acme-chat@{_iso(change)}..")
    assert metric(runner, "costctx_price_start_time_outside_tolerance_spans_total") == 1


def test_reloading_never_changes_what_a_recorded_source_reprices_to(tmp_path):
    archive = PriceArchive(str(tmp_path / "history"))
    change = parse_instant("2026-10-01", "t")
    first = two_period_table(change, ("3.00", "12.00"), ("2.00", "8.00"), "q3").encode()
    second = two_period_table(change, ("9.00", "9.00"), ("9.00", "9.00"), "q3").encode()  # same label, new bytes
    for data in (first, second):
        table = parse_yaml_table(data, name="overrides")
        archive.put(ArchivedVersion("overrides", "overrides", table.version, table.source_id, full_digest(data)), data)
    old_id = parse_yaml_table(first, name="overrides").source_id
    code, text = run_price("--model", "acme-chat", "--input", "1234567", "--output", "7654321",
                           "--at", "2026-10-03T12:00Z", "--source", old_id, "--history", str(tmp_path / "history"))
    # 1,234,567 x $2/M + 7,654,321 x $8/M = $2.469134 + $61.234568 = $63.703702 exactly
    assert code == 0, text
    assert "cost.usd  $63.703702" in text
    assert f"{old_id}/acme-chat@2026-10-01.." in text


def test_the_archive_is_bounded_and_outlives_the_process(tmp_path):
    directory = tmp_path / "history"
    archive = PriceArchive(str(directory), max_versions=3)
    ids = []
    for i in range(5):
        data = f"version: v{i}\nmodels:\n  m: {{input: {i + 1}, output: 1}}\n".encode()
        table = parse_yaml_table(data, name="overrides")
        archive.put(ArchivedVersion("overrides", "overrides", table.version, table.source_id, full_digest(data)), data)
        ids.append(table.source_id)
    assert [v.source_id for v in archive.versions()] == ids[2:]
    assert archive.evicted == 2
    assert len(list(directory.glob("*.raw"))) == 3
    reopened = PriceArchive(str(directory), max_versions=3)
    assert [v.source_id for v in reopened.versions()] == ids[2:]
    assert reopened.find(ids[0]) == []


def test_memory_archive_is_bounded_in_bytes():
    archive = PriceArchive(None, max_versions=100, max_memory_bytes=1_000)
    for i in range(10):
        data = (f"version: v{i}\nmodels:\n  m: {{input: 1, output: 1}}\n" + "#" * 300).encode()
        table = parse_yaml_table(data, name="o")
        archive.put(ArchivedVersion("overrides", "o", table.version, table.source_id, full_digest(data)), data)
    assert sum(len(archive.data(v) or b"") for v in archive.versions()) <= 1_000
    assert len(archive.versions()) < 10


def test_litellm_snapshots_price_the_spans_of_their_own_period():
    snapshot = json.dumps({"acme-chat": {"input_cost_per_token": 0.000003, "output_cost_per_token": 0.000012,
                                         "litellm_provider": "acme"}}).encode()
    later = json.dumps({"acme-chat": {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000004,
                                      "litellm_provider": "acme"}}).encode()
    cut = parse_instant("2026-10-01", "t")
    book = PriceBook([parse_litellm(snapshot, valid_until=cut), parse_litellm(later, valid_from=cut)])
    usage = Usage(input=1_000, output=1_000)
    assert book.price(usage, "acme-chat", at=cut - 1).pico == from_usd("0.015")
    assert book.price(usage, "acme-chat", at=cut).pico == from_usd("0.005")
    assert book.price(usage, "acme-chat", at=cut).source.endswith("/acme-chat@2026-10-01..")


@pytest.mark.parametrize("rows, message", [
    ("    - {from: 2026-10-01, input: 1, output: 1}\n"
     "    - {from: 2026-11-01, until: 2026-10-15, input: 2, output: 2}\n", "'until' must be after 'from'"),
    ("    - {from: 2026-10-01, input: 1, output: 1}\n    - {from: 2026-11-01, input: 2, output: 2}\n", "overlap"),
    ("    - {input: 1, output: 1}\n    - {input: 2, output: 2}\n", "more than one undated"),
    ("    - {from: last tuesday, input: 1, output: 1}\n", "not an ISO date"),
])
def test_bad_periods_are_refused_naming_the_row(rows, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_yaml_table(f"models:\n  acme-chat:\n{rows}".encode(), name="o")
    assert "models.acme-chat" in str(caught.value)


def test_validate_and_run_load_the_configured_price_files(tmp_path, capsys):
    from costctx.cli.main import main

    broken = tmp_path / "prices.yaml"
    broken.write_text("models:\n  acme-chat: {input: 1}\n")
    config = tmp_path / "costctx.yaml"
    config.write_text(
        "processors:\n  price:\n    sources: [builtin, {type: overrides, path: " + str(broken) + "}]\n"
        "exporters:\n  otlp: {endpoint: '127.0.0.1:1'}\n"
        "service:\n  pipelines:\n    traces: {processors: [price], exporters: [otlp]}\n")
    for command in ("validate", "run"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--config", str(config)])
        assert exited.value.code == 2
        assert "processors.price: price source overrides" in capsys.readouterr().err
    broken.write_text("models:\n  acme-chat: {input: 1, output: 2}\n")
    assert main(["validate", "--config", str(config)]) == 0


def test_newest_usage_keys(make_sidecar, sink, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  acme-vision: {input: 2.00, cache_creation: 2.50, input_image: 5.00, "
                      "input_audio: 40.00, output: 10.00}\n")
    runner = make_sidecar(processors=["normalize", "price", "envelope"],
                          processor_config={"price": {"sources": ["builtin", {"type": "overrides",
                                                                               "path": str(prices)}]}})
    now = time.time_ns()
    base = {"gen_ai.request.model": "acme-vision", "gen_ai.usage.output_tokens": 100}
    got = send_at(runner, sink, [
        ("cache-write", now, {**base, "gen_ai.usage.input_tokens": 1_000,
                              "gen_ai.usage.cache_write.input_tokens": 400}),
        ("modalities", now, {**base, "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.image.input_tokens": 300,
                             "gen_ai.usage.audio.input_tokens": 100}),
        ("reported-usd", now, {**base, "gen_ai.usage.input_tokens": 1, "gen_ai.usage.cost.amount": 0.25,
                               "gen_ai.usage.cost.currency": "USD", "gen_ai.usage.cost.source": "provider"}),
        ("reported-eur", now, {**base, "gen_ai.usage.input_tokens": 1, "gen_ai.usage.cost.amount": 0.25,
                               "gen_ai.usage.cost.currency": "EUR", "gen_ai.usage.cost.source": "provider"}),
    ])
    rate = {k: rate_from_per_million(v) for k, v in
            {"in": "2", "write": "2.5", "image": "5", "audio": "40", "out": "10"}.items()}
    # cache_write read as cache creation: 600 x $2/M + 400 x $2.50/M + 100 x $10/M
    assert from_usd(got["cache-write"]["cost.usd"]) == 600 * rate["in"] + 400 * rate["write"] + 100 * rate["out"]
    assert "gen_ai.usage.cache_creation.input_tokens" in got["cache-write"]
    # per-modality input: 600 text x $2/M + 300 image x $5/M + 100 audio x $40/M + 100 x $10/M
    assert from_usd(got["modalities"]["cost.usd"]) == (600 * rate["in"] + 300 * rate["image"]
                                                      + 100 * rate["audio"] + 100 * rate["out"])
    assert got["reported-usd"]["cost.usd"] == 0.25
    assert got["reported-usd"]["cost.origin"] == "reported"
    assert got["reported-usd"]["cost.price_source"] == "reported:gen_ai.usage.cost.amount"
    assert "cost.usd" not in got["reported-eur"]
    assert "cost.usd" in got["reported-eur"]["costctx.missing"]
    assert metric(runner, "costctx_price_reported_non_usd_spans_total", currency="EUR") == 1


def test_explain_span_shows_the_arithmetic_and_says_when_it_differs(tmp_path):
    span = {"gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.cache_read.input_tokens": 200,
            "gen_ai.usage.output_tokens": 500}
    code, text = run_price("--model", "gpt-4o", "--input", "1")
    source = next(line.split()[1] for line in text.splitlines() if line.startswith("source"))
    # 800 x $2.50/M + 200 x $1.25/M + 500 x $10/M = $0.002 + $0.00025 + $0.005 = $0.00725
    code, text = explain({**span, "cost.usd": 0.00725, "cost.price_source": source}, tmp_path=tmp_path)
    assert code == 0 and "matches" in text
    assert "input (uncached): 800 tokens" in text and "cache read: 200 tokens" in text
    code, text = explain({**span, "cost.usd": 0.007, "cost.price_source": source}, tmp_path=tmp_path)
    assert code == 1 and "DIFFERS" in text
    code, text = explain({**span, "cost.usd": 0.5, "cost.origin": "reported",
                          "cost.price_source": "reported:gen_ai.usage.cost"}, tmp_path=tmp_path)
    assert code == 0 and "reported by the provider" in text
    # An OTLP/JSON span works too (intValue as a string, as OTLP/JSON writes it).
    otlp = {"startTimeUnixNano": str(time.time_ns()), "attributes": [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
        for k, v in span.items()] + [{"key": "cost.usd", "value": {"doubleValue": 0.00725}}]}
    code, text = explain(otlp, tmp_path=tmp_path)
    assert code == 0 and "matches" in text, text


def test_an_unknown_source_is_a_clear_error(tmp_path):
    code, text = run_price("--model", "gpt-4o", "--input", "1", "--output", "1",
                           "--source", "overrides@gone#deadbeef", "--history", str(tmp_path))
    assert code == 2 and "not in the archive" in text


def test_source_period_options_are_checked_at_config_time(sink):
    config = {"exporters": {"otlp": {"endpoint": f"127.0.0.1:{sink.grpc_port}"}},
              "processors": {"price": {"sources": [{"type": "overrides", "path": "x.yaml",
                                                    "effective_from": "2026-10-01"}]}},
              "service": {"pipelines": {"traces": {"processors": ["price"], "exporters": ["otlp"]}}}}
    from costctx.service.config.loader import ConfigError

    with pytest.raises(ConfigError, match="apply to litellm snapshots"):
        build_config(config, environ={})


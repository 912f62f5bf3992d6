"""Config loading, ${env:VAR} expansion, and the `costctx validate` / `run` / `demo` commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from costctx.exporters.otlp.config import OtlpHttpExporterConfig
from costctx.service.config import ConfigError, load_config, load_config_text

PIPELINES = "service: {pipelines: {traces: {exporters: [otlp]}}}\n"


def costctx(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "costctx", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_defaults_use_the_standard_otel_variables():
    config = load_config(
        None,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc, tenant = t1",
        },
    )
    exporter = config.exporters["otlp"]
    assert exporter.target == "collector:4317" and not exporter.use_tls
    assert exporter.headers == {"x-api-key": "abc", "tenant": "t1"}
    assert config.receivers.otlp.protocols.grpc.endpoint == "127.0.0.1:4317"
    assert config.receivers.otlp.protocols.http.endpoint == "127.0.0.1:4318"
    assert config.service.telemetry.metrics.address == "127.0.0.1:8888"
    assert set(config.service.pipelines) == {"traces", "metrics", "logs"}

    http = load_config(
        None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    )
    assert isinstance(http.exporters["otlphttp"], OtlpHttpExporterConfig)


def test_env_expansion_takes_the_type_of_a_whole_reference():
    text = (
        """
receivers: {otlp: {protocols: {grpc: {endpoint: "${env:GRPC_EP}", max_recv_msg_size_mib: "${env:MIB}"}}}}
exporters:
  otlp:
    endpoint: ${env:COLLECTOR}
    headers: {authorization: "Bearer ${env:TOKEN}", price: "$$5"}
    timeout: ${env:UNSET:-250ms}
"""
        + PIPELINES
    )
    config = load_config_text(
        text, {"GRPC_EP": "127.0.0.1:5317", "MIB": "8", "COLLECTOR": "otel:4317", "TOKEN": "s3cret"}
    )
    assert config.receivers.otlp.protocols.grpc.max_recv_msg_size_mib == 8
    assert config.receivers.otlp.protocols.http is None  # named protocols only
    assert config.exporters["otlp"].headers == {"authorization": "Bearer s3cret", "price": "$5"}
    assert config.exporters["otlp"].timeout == 0.25


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "exporters: {otlp: {endpoint: 'x:1', timeout: soon}}\n" + PIPELINES,
            "exporters.otlp.timeout: invalid duration",
        ),
        ("exporters: {otlp: {endpoint: 'x:1', bogus: 1}}\n" + PIPELINES, "exporters.otlp.bogus: unknown key"),
        ("exporters: {otlp: {endpoint: 'nohost'}}\n" + PIPELINES, "exporters.otlp.endpoint: endpoint 'nohost' must be"),
        ("exporters: {otlp: {endpoint: 'x:1'}}\n" + PIPELINES + "extra: 1\n", "extra: unknown key"),
        (
            "exporters: {otlp: {endpoint: 'x:1'}}\nservice: {pipelines: {traces: {exporters: [nope]}}}\n",
            "service.pipelines.traces.exporters: 'nope' is not defined",
        ),
        (
            "exporters: {otlp: {endpoint: 'x:1'}}\nprocessors: {warp: {}}\n" + PIPELINES,
            "processors.warp: unknown processor type 'warp'",
        ),
        (
            "exporters: {otlp: {endpoint: 'x:1'}}\nprocessors: {envelope: {required_fields: [nope]}}\n" + PIPELINES,
            "processors.envelope.required_fields: not context fields of the envelope: nope",
        ),
        ("exporters: {otlp: {endpoint: '127.0.0.1:4317'}}\n" + PIPELINES, "this sidecar's own receiver"),
        ("exporters: {otlp: {}}\n" + PIPELINES, "exporters.otlp.endpoint: required key is missing"),
        (
            "receivers: {otlp: {protocols: {grpc: {endpoint: 'h:99999'}}}}\nexporters: {otlp: {endpoint: 'x:1'}}\n"
            + PIPELINES,
            "receivers.otlp.protocols.grpc.endpoint",
        ),
        ("- a list\n", "top level must be a mapping"),
    ],
)
def test_invalid_configs_name_the_key(text, message):
    with pytest.raises(ConfigError) as info:
        load_config_text(text, {})
    assert message in str(info.value)


def test_validate_command_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("exporters: {otlp: {endpoint: 'collector:4317', insecure: true}}\n" + PIPELINES)
    result = costctx("validate", "--config", str(good))
    assert result.returncode == 0 and "config OK" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("exporters: {otlp: {endpoint: 'collector:4317', compresion: gzip}}\n" + PIPELINES)
    result = costctx("validate", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == "costctx: invalid config: exporters.otlp.compresion: unknown key"


def test_run_with_invalid_config_starts_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}\n"
        "exporters: {otlp: {endpoint: 'collector:4317', timeout: -1}}\n" + PIPELINES
    )
    result = costctx("run", "--config", str(bad), timeout=30)
    assert result.returncode == 2 and "exporters.otlp.timeout" in result.stderr


@pytest.mark.e2e  # the demo starts a sidecar and a sink
def test_demo_runs_and_shows_the_spans():
    result = costctx("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reached the sink" in result.stdout
    assert "POST /v1/answer" in result.stdout and "chat claude-sonnet-4-5" in result.stdout

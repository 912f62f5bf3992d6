"""What a new user meets first, tried as they would: the starter config, `costctx run` with
nothing configured, `costctx sink`, `--version`, and the errors a config gets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from importlib.metadata import version

import pytest
import yaml

from costctx.cli.main import _say_what_the_defaults_do
from costctx.exporters.debug.config import DebugExporterConfig
from costctx.exporters.otlp.config import OtlpGrpcExporterConfig, OtlpHttpExporterConfig
from costctx.service.app import Sidecar
from costctx.service.config import ConfigError, load_config
from costctx.service.config.loader import load_config_text
from tests.support.paths import REPO
from tests.support.process import SidecarProcess, free_port
from tests.support.sdk import tracer_provider
from tests.support.wait import wait_until

ROOT = REPO
STARTER = ROOT / "costctx.yaml"


def costctx(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costctx", *args], capture_output=True, text=True,
                          timeout=timeout, env=env if env is not None else os.environ.copy(), cwd=ROOT)


def without_otel_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "COLLECTOR_ENDPOINT"}


# -- the starter config -----------------------------------------------------------------
def readme_reference_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Configuration reference"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    return section[start:section.index("```\n", start)]


def test_the_readme_reference_is_the_starter_config():
    assert readme_reference_block() == STARTER.read_text(encoding="utf-8")


def test_the_starter_config_validates_and_builds_as_printed():
    result = costctx("validate", "--config", str(STARTER), env=without_otel_env())
    assert result.returncode == 0, result.stderr
    assert "traces: [normalize, limits, inherit, price, budget, envelope] -> otlp" in result.stdout
    config = load_config(STARTER, environ={})
    assert config.exporters["otlp"].endpoint == "127.0.0.1:14317"  # where `costctx sink` listens
    declared = set(config.processors)
    assert declared == set(config.service.pipelines["traces"].processors)
    Sidecar(config)  # `run` builds every component the file names (no port is opened here)


# -- no config, no endpoint: the debug exporter -----------------------------------------
def test_no_config_and_no_endpoint_runs_on_the_debug_exporter():
    config = load_config(None, environ={})
    assert {name: type(c) for name, c in config.exporters.items()} == {"debug": DebugExporterConfig}
    assert all(p.exporters == ["debug"] for p in config.service.pipelines.values())
    result = costctx("validate", env=without_otel_env())
    assert result.returncode == 0, result.stderr
    assert "-> debug" in result.stdout
    # With the variable set, the defaults forward there, as before.
    grpc = load_config(None, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert isinstance(grpc.exporters["otlp"], OtlpGrpcExporterConfig)
    http = load_config(None, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                                      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert isinstance(http.exporters["otlphttp"], OtlpHttpExporterConfig)


def test_start_up_says_the_defaults_send_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="costctx"):
        _say_what_the_defaults_do(load_config(None, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}))
        assert not caplog.records
        _say_what_the_defaults_do(load_config(None, environ={}))
    assert "debug exporter, which logs each batch and sends nothing" in caplog.text


def debug_sidecar_config(verbosity: str) -> dict:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
        "processors": {"envelope": {}},
        "exporters": {"debug": {"verbosity": verbosity}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["envelope"],
                                             "exporters": ["debug"]}},
                    "telemetry": {"metrics": {"address": f"127.0.0.1:{free_port()}"}}},
    }


@pytest.mark.e2e  # a `costctx run` process
@pytest.mark.parametrize("verbosity", ["basic", "normal"])
def test_the_debug_exporter_logs_what_it_would_send(tmp_path, verbosity):
    process = SidecarProcess(debug_sidecar_config(verbosity), tmp_path).start()
    try:
        provider = tracer_provider(grpc_port=int(process.grpc_target.rsplit(":", 1)[1]))
        tracer = provider.get_tracer("trial")
        with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
            pass
        provider.force_flush()
        provider.shutdown()
        assert wait_until(lambda: "traces: 2 spans" in process.log()), process.log()
        sent = {"signal": "traces", "exporter": "debug"}
        assert wait_until(lambda: process.metric("costctx_exporter_sent_items_total", sent) == 2)
        span_lines = [line for line in process.log().splitlines() if "span 'inner'" in line]
        assert len(span_lines) == (1 if verbosity == "normal" else 0)
        if span_lines:
            assert "service=test-service" in span_lines[0] and "costctx.schema" in span_lines[0]
    finally:
        process.close()


def test_the_debug_exporter_cannot_carry_pushed_metrics():
    config = debug_sidecar_config("basic")
    config["service"]["telemetry"]["metrics"]["otlp"] = {"enabled": True}
    with pytest.raises(ConfigError, match="sends nowhere"):
        load_config_text(yaml.safe_dump(config), {})


# -- costctx sink -----------------------------------------------------------------------
@pytest.mark.e2e  # a `costctx sink` process
def test_costctx_sink_prints_and_records_what_arrives(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    record = tmp_path / "received.jsonl"
    sink = subprocess.Popen(
        [sys.executable, "-m", "costctx", "sink", "--grpc", f"127.0.0.1:{grpc_port}",
         "--http", f"127.0.0.1:{http_port}", "--record", str(record)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert sink.stderr is not None
        banner = sink.stderr.readline()
        assert f"grpc=127.0.0.1:{grpc_port} http=127.0.0.1:{http_port}" in banner, banner
        for name, ports in (("over-grpc", {"grpc_port": grpc_port}), ("over-http", {"http_port": http_port})):
            provider = tracer_provider(**ports, batch=False)
            provider.get_tracer("trial").start_span(name, attributes={"workflow.id": "wf-1"}).end()
            provider.shutdown()
        assert wait_until(lambda: record.exists() and len(record.read_text().splitlines()) == 2)
        sink.send_signal(signal.SIGTERM)
        out, _ = sink.communicate(timeout=60)
        assert sink.returncode == 0
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait(10)
    assert out.count("traces: 1 spans") == 2
    assert "span 'over-grpc' service=test-service" in out and "span 'over-http'" in out
    assert "'workflow.id': 'wf-1'" in out
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    names = sorted(line["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for line in lines)
    assert names == ["over-grpc", "over-http"] and {line["signal"] for line in lines} == {"traces"}


def test_costctx_sink_on_a_taken_port_says_so():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = costctx("sink", "--grpc", "127.0.0.1:0", "--http", f"127.0.0.1:{port}", timeout=30)
    assert result.returncode == 1 and "cannot listen" in result.stderr


# -- --version --------------------------------------------------------------------------
def test_version():
    result = costctx("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"costctx {version('costctx')}"


# -- environment and errors -------------------------------------------------------------
def test_otlp_headers_from_the_environment_are_percent_decoded():
    config = load_config(None, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                                        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-tenant=a%2Cb"})
    assert config.exporters["otlp"].headers == {"authorization": "Bearer abc", "x-tenant": "a,b"}


def test_an_unset_variable_is_named_in_the_error():
    text = """
processors:
  inherit: {wait_duration: "${env:COSTCTX_TEST_UNSET_WAIT}"}
exporters:
  otlp: {endpoint: "collector:4317"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [inherit], exporters: [otlp]}
"""
    with pytest.raises(ConfigError) as error:
        load_config_text(text, {})
    [message] = error.value.messages
    assert message.startswith("processors.inherit.wait_duration: ${env:COSTCTX_TEST_UNSET_WAIT} is not set "
                              "(invalid duration None")
    # Set, or with a default, it is not mentioned.
    load_config_text(text, {"COSTCTX_TEST_UNSET_WAIT": "2s"})
    load_config_text(text.replace("WAIT}", "WAIT:-2s}"), {})


BROKEN = """
processors:
  inherit: {wait_duration: soon, cache: {max_entries: -1}}
  limits: {max_attributes_per_span: 0}
exporters:
  otlp: {endpoint: "collector:4317", timeout: later}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [inherit, limits], exporters: [otlp]}
"""


def test_validation_reports_every_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config_text(BROKEN, {})
    locations = sorted(message.split(":")[0] for message in error.value.messages)
    assert locations == ["exporters.otlp.timeout", "processors.inherit.cache.max_entries",
                         "processors.inherit.wait_duration", "processors.limits.max_attributes_per_span"]
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = costctx("validate", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("costctx: invalid config (4 errors):")
    assert all(loc in result.stderr for loc in locations)

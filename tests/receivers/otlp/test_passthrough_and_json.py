"""Metrics and logs pass through untouched; OTLP/JSON with hex ids and integer enums is understood."""

from __future__ import annotations

import json

import requests
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.support.otlp import LOGS_METHOD, METRICS_METHOD, grpc_call, logs_request, metrics_request


def test_metrics_and_logs_arrive_byte_for_byte_over_grpc(make_sidecar, sink):
    side = make_sidecar(processors=["envelope"]).sidecar
    metrics, logs = metrics_request(), logs_request()
    assert grpc_call(side.grpc_port, METRICS_METHOD, metrics.SerializeToString())[1] is None
    assert grpc_call(side.grpc_port, LOGS_METHOD, logs.SerializeToString())[1] is None
    assert sink.wait_for_requests("metrics", 1) and sink.wait_for_requests("logs", 1)
    assert sink.raw["metrics"] == [metrics.SerializeToString()]
    assert sink.raw["logs"] == [logs.SerializeToString()]


def test_metrics_and_logs_over_http_json_arrive_equal(make_sidecar, sink):
    side = make_sidecar(processors=["envelope"]).sidecar
    logs = logs_request()
    body = json_format.MessageToDict(logs)
    # OTLP/JSON: ids are hex, not base64; enums are integers.
    record = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["traceId"] = logs.resource_logs[0].scope_logs[0].log_records[0].trace_id.hex()
    record["spanId"] = logs.resource_logs[0].scope_logs[0].log_records[0].span_id.hex()
    record["severityNumber"] = 9
    record["someFutureField"] = "ignored"
    resp = requests.post(
        f"http://127.0.0.1:{side.http_port}/v1/logs",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 200 and resp.json() == {}
    metrics = metrics_request()
    resp = requests.post(
        f"http://127.0.0.1:{side.http_port}/v1/metrics",
        data=metrics.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert resp.status_code == 200
    assert sink.wait_for_requests("logs", 1) and sink.wait_for_requests("metrics", 1)
    assert sink.requests["logs"][0] == logs
    assert sink.requests["metrics"][0] == metrics


def test_sdk_metrics_pass_through(make_sidecar, sink):
    side = make_sidecar(processors=["envelope"]).sidecar
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"127.0.0.1:{side.grpc_port}", insecure=True), export_interval_millis=60_000
    )
    provider = MeterProvider(resource=Resource.create({"service.name": "router"}), metric_readers=[reader])
    counter = provider.get_meter("test").create_counter("gen_ai.requests")
    counter.add(3, {"gen_ai.request.model": "gpt-4o"})
    provider.force_flush()
    provider.shutdown()
    assert sink.wait_for_requests("metrics", 1)
    metric = sink.requests["metrics"][0].resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.name == "gen_ai.requests"
    assert metric.sum.data_points[0].as_int == 3


def test_traces_json_with_hex_ids_and_int_enums(make_sidecar, sink):
    side = make_sidecar(processors=["envelope"]).sidecar
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-agent"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                                    {"key": "workflow.id", "value": {"stringValue": "wf-9"}},
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    resp = requests.post(
        f"http://127.0.0.1:{side.http_port}/v1/traces",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    assert sink.wait_for_spans(1)
    span = sink.requests["traces"][0].resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert span.kind == 3 and span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000
    flat = sink.spans()[0]
    assert flat.attributes["gen_ai.usage.input_tokens"] == 42
    assert flat.attributes["costctx.missing"] == ["request.id", "owner.tenant", "owner.feature"]

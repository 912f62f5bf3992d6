"""The optional OTLP push of the sidecar's metrics (OpenTelemetry SDK MeterProvider + OTLP exporter)."""

from __future__ import annotations

import time

import pytest

from costctx.service.config import ConfigError
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.survival.test_survival import EXPECTED, sample, samples, send_known_workload


def pushed_points(sink, metric_name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The data points of `metric_name` in the latest metrics request that has it."""
    for request in reversed(sink.requests["metrics"]):
        for rm in request.resource_metrics:
            resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != metric_name:
                        continue
                    assert resource["service.name"] == "costctx"
                    data = metric.sum if metric.WhichOneof("data") == "sum" else metric.gauge
                    return {
                        tuple(sorted((kv.key, kv.value.string_value) for kv in p.attributes)): (
                            p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        )
                        for p in data.data_points
                    }
    return {}


def wait_for_point(sink, metric_name: str, labels: dict[str, str], value: float, timeout: float = 60) -> dict:
    key = tuple(sorted(labels.items()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        points = pushed_points(sink, metric_name)
        if points.get(key) == value:
            return points
        time.sleep(0.05)
    raise AssertionError(f"{metric_name}{labels} never pushed as {value}: {pushed_points(sink, metric_name)}")


@pytest.mark.parametrize("exporter", ["otlp", "otlphttp"])
def test_metrics_pushed_over_otlp_match_the_known_workload(sink, exporter):
    config = sidecar_config(sink.grpc_port, processors=["envelope"], exporter=exporter, sink_http_port=sink.http_port,
                            service={"telemetry": {"metrics": {"otlp": {"enabled": True, "interval": "200ms"}}}})
    runner = start_sidecar(config)
    try:
        sent = send_known_workload(runner.sidecar.grpc_port)
        assert sink.wait_for_spans(sent)
        points = wait_for_point(sink, "costctx_field_outcomes",
                                {"hop": "worker", "field": "owner.tenant", "outcome": "missing"}, 1)
        for (hop, key), (present, missing) in EXPECTED.items():
            for outcome, count in (("present", present), ("missing", missing), ("inherited", 0)):
                assert points[(("field", key), ("hop", hop), ("outcome", outcome))] == count
        spend = wait_for_point(sink, "costctx_spend_usd", {"tenant": "unknown", "feature": "chat"}, 0.0035)
        assert spend[(("feature", "chat"), ("tenant", "acme"))] == 0.0125
        verdict = pushed_points(sink, "costctx_readiness_verdict")
        assert verdict[(("verdict", "fail"), ("workflow", "answer"))] == 1
        # The receiver's own counters travel the same way.
        accepted = pushed_points(sink, "costctx_receiver_accepted_items")
        assert accepted[(("signal", "traces"), ("transport", "grpc"))] == 4
        # Pushed straight to the exporter's endpoint, not through the sidecar's own receiver.
        own = samples(runner.sidecar.admin_port)
        assert sample(own, "costctx_receiver_accepted_items_total", signal="metrics", transport="grpc") == 0
    finally:
        runner.stop()


def test_push_is_off_by_default_and_names_a_defined_exporter(sink):
    runner = start_sidecar(sidecar_config(sink.grpc_port, processors=["envelope"]))
    try:
        assert runner.sidecar.metrics_push is None
    finally:
        runner.stop()
    bad = sidecar_config(sink.grpc_port, processors=["envelope"],
                         service={"telemetry": {"metrics": {"otlp": {"enabled": True, "exporter": "nope"}}}})
    with pytest.raises(ConfigError, match="service.telemetry.metrics.otlp.exporter: 'nope' is not defined"):
        start_sidecar(bad)

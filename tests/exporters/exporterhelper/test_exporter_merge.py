"""`sending_queue.batch.flush_timeout`: queued requests leave merged, every item once.

A real sidecar receives small requests of several signals over gRPC and forwards them to the
real OTLP sink; with merging on, the sink sees fewer, larger requests holding every item.
"""

from __future__ import annotations

import pytest

from costctx.exporters.exporterhelper.config import BatchConfig
from costctx.pdata.signals import TRACES, count_items
from tests.exporters.exporterhelper.test_exporter_split import _logs_request, _names
from tests.support.otlp import grpc_call
from tests.support.otlp_client import trace_request
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.support.sink import PatientSink

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _send_all(port: int, batches: list[list[str]], logs: int = 0) -> None:
    for i, names in enumerate(batches):
        assert grpc_call(port, EXPORT, trace_request(names), timeout=10)[1] is None
        if i < logs:
            assert grpc_call(port, LOGS_EXPORT, _logs_request().SerializeToString(), timeout=10)[1] is None


def _config(sink: PatientSink, batch: dict | None) -> dict:
    config = sidecar_config(sink.grpc_port, processors=[])
    config["service"]["pipelines"]["logs"] = {"receivers": ["otlp"], "processors": [], "exporters": ["otlp"]}
    if batch is not None:
        config["exporters"]["otlp"]["sending_queue"] = {"batch": batch}
    return config


def test_queued_requests_leave_merged_with_every_span_once():
    batches = [_names(f"b{b}", 10) for b in range(8)]
    with PatientSink() as sink:
        runner = start_sidecar(_config(sink, {"flush_timeout": "300ms", "min_size": 10_000}))
        try:
            _send_all(runner.sidecar.grpc_port, batches, logs=3)
            assert sink.wait_for_spans(80, timeout=30)
            assert sink.wait_for_requests("logs", 1, timeout=30)
            sizes = [count_items(TRACES, r) for r in sink.requests["traces"]]
            # Eight requests sent within the flush timeout of the first: fewer leave.
            assert sum(sizes) == 80 and len(sizes) < 8
            assert sorted(s.name for s in sink.spans()) == sorted(n for names in batches for n in names)
            # Logs queued among the spans leave as logs, merged among themselves.
            log_records = sum(len(sl.log_records) for r in sink.requests["logs"] for rl in r.resource_logs
                              for sl in rl.scope_logs)
            assert log_records == 3 * 12
        finally:
            runner.stop()


def test_min_size_ends_a_merge_before_the_timeout():
    batches = [_names(f"m{b}", 10) for b in range(6)]
    with PatientSink() as sink:
        # A flush timeout far beyond the test: only min_size (20 spans) lets requests leave.
        runner = start_sidecar(_config(sink, {"flush_timeout": "60s", "min_size": 20}))
        try:
            _send_all(runner.sidecar.grpc_port, batches)
            assert sink.wait_for_spans(60, timeout=30)
            sizes = [count_items(TRACES, r) for r in sink.requests["traces"]]
            assert sizes == [20, 20, 20]
        finally:
            runner.stop()


def test_without_a_flush_timeout_each_request_leaves_as_received():
    batches = [_names(f"n{b}", 10) for b in range(4)]
    with PatientSink() as sink:
        runner = start_sidecar(_config(sink, None))
        try:
            _send_all(runner.sidecar.grpc_port, batches)
            assert sink.wait_for_spans(40, timeout=30)
            assert [count_items(TRACES, r) for r in sink.requests["traces"]] == [10, 10, 10, 10]
        finally:
            runner.stop()


@pytest.mark.parametrize("value", ["-1s"])
def test_a_negative_flush_timeout_is_refused(value):
    with pytest.raises(ValueError):
        BatchConfig(flush_timeout=value)


def test_a_merge_being_gathered_is_sent_at_shutdown_not_lost():
    batches = [_names(f"s{b}", 10) for b in range(3)]
    with PatientSink() as sink:
        # Neither the timeout nor min_size would end this merge before the test does.
        runner = start_sidecar(_config(sink, {"flush_timeout": "120s", "min_size": 10_000}))
        _send_all(runner.sidecar.grpc_port, batches)
        runner.stop(grace=5)
        assert sink.wait_for_spans(30)
        assert sorted(s.name for s in sink.spans()) == sorted(n for names in batches for n in names)

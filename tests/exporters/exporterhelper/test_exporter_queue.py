"""The sending queue: retries while the downstream is down, refuses when full, never drops silently."""

from __future__ import annotations

import time

import grpc
import pytest
import requests

from costctx.exporters.otlp.grpc_sender import retry_delay_from_metadata
from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request


@pytest.mark.parametrize("exporter", ["otlp", "otlphttp"])
def test_down_then_up_delivers_queued_batches(make_sidecar, sink, exporter):
    side = make_sidecar(processors=["envelope"], exporter=exporter).sidecar
    sink.refuse(6)  # the downstream answers UNAVAILABLE / 503 six times, then recovers
    for _ in range(4):
        assert grpc_call(side.grpc_port, TRACE_METHOD, traces_request(5).SerializeToString())[1] is None
    assert sink.wait_for_spans(20)
    assert sink.span_count() == 20  # each batch exactly once


def test_full_queue_refuses_with_retryable_status_then_recovers(make_sidecar, sink):
    runner = make_sidecar(
        processors=["envelope"],
        exporters={
            "otlp": {
                "sending_queue": {"num_consumers": 1, "queue_size": 2},
                "retry_on_failure": {"initial_interval": "50ms", "max_interval": "50ms", "max_elapsed_time": "60s"},
            }
        },
    )
    side = runner.sidecar
    sink.refuse(10_000)
    accepted = refused_grpc = 0
    last_error = None
    for _ in range(8):
        _, error = grpc_call(side.grpc_port, TRACE_METHOD, traces_request(2).SerializeToString())
        if error is None:
            accepted += 1
        else:
            refused_grpc += 1
            last_error = error
    # One batch in flight with the consumer, two queued: the rest are refused.
    assert accepted == 3 and refused_grpc == 5
    assert last_error.code() == grpc.StatusCode.UNAVAILABLE
    delay = retry_delay_from_metadata(last_error.trailing_metadata())
    assert delay == 1.0  # the receiver's retry hint for a full queue

    resp = requests.post(
        f"http://127.0.0.1:{side.http_port}/v1/traces",
        data=traces_request(2).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"

    sink.refuse(0)  # the downstream comes back: every accepted batch is delivered
    assert sink.wait_for_spans(accepted * 2)
    metrics = requests.get(f"http://127.0.0.1:{side.admin_port}/metrics", timeout=5).text
    assert 'costctx_receiver_refused_items_total{reason="queue_full",signal="traces"} 12.0' in metrics


def test_permanent_error_is_logged_and_counted_not_retried(make_sidecar, sink):
    side = make_sidecar(processors=["envelope"]).sidecar
    sink.refuse(1, grpc.StatusCode.INVALID_ARGUMENT)
    grpc_call(side.grpc_port, TRACE_METHOD, traces_request(3).SerializeToString())
    failed = 'costctx_exporter_send_failed_items_total{exporter="otlp",signal="traces"} 3.0'
    metrics = ""
    for _ in range(200):  # wait for the first batch's failure before sending the second
        metrics = requests.get(f"http://127.0.0.1:{side.admin_port}/metrics", timeout=5).text
        if failed in metrics:
            break
        time.sleep(0.05)
    assert failed in metrics
    assert (
        'costctx_exporter_send_failed_batches_total{exporter="otlp",reason="invalid_argument",signal="traces"} 1.0'
        in metrics
    )
    # Not retried: the downstream recovered at once, yet the refused batch never arrives.
    grpc_call(side.grpc_port, TRACE_METHOD, traces_request(2).SerializeToString())
    assert sink.wait_for_spans(2)
    time.sleep(0.3)
    assert sink.span_count() == 2

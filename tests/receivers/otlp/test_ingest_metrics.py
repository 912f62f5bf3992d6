"""The receiver's per-request metrics: every request counted, with each series bound once
(`.labels()` looks the series up under a lock, ~2 us a call, three per request before)."""

from __future__ import annotations

import pytest

from costctx.component.consumer import IngestError
from costctx.pdata.signals import TRACES
from costctx.receivers.otlp.ingest import Ingest
from costctx.receivers.otlp.metrics import ReceiverMetrics
from costctx.service.pipeline import TracesPipeline
from costctx.telemetry.metrics import SidecarMetrics
from tests.support.otlp_client import trace_request


def _sample(metrics: SidecarMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_accepted_and_refused_requests_are_counted_with_series_bound_once(monkeypatch):
    metrics = SidecarMetrics()
    receiver = ReceiverMetrics(metrics)
    ingest = Ingest(TracesPipeline([], [], metrics), {}, receiver, max_items=5)
    looked_up: list[tuple] = []
    for family in (receiver.requests_received, receiver.items_received, receiver.pipeline_duration):
        original = family.labels

        def counting(*values, _original=original):
            looked_up.append(values)
            return _original(*values)

        monkeypatch.setattr(family, "labels", counting)
    accepted = trace_request([f"s{n}" for n in range(3)])
    too_many = trace_request([f"t{n}" for n in range(6)])
    for _ in range(10):
        ingest.export_protobuf(TRACES, accepted, "grpc")
        with pytest.raises(IngestError):
            ingest.export_protobuf(TRACES, too_many, "http")

    assert _sample(metrics, "costctx_receiver_requests_total", signal="traces", transport="grpc",
                   result="accepted") == 10
    assert _sample(metrics, "costctx_receiver_accepted_items_total", signal="traces", transport="grpc") == 30
    assert _sample(metrics, "costctx_pipeline_duration_seconds_count", signal="traces") == 10
    assert _sample(metrics, "costctx_receiver_requests_total", signal="traces", transport="http",
                   result="too_large") == 10
    # Each series looked up once, however many requests: accepted (three), too_large (one).
    assert sorted(looked_up) == sorted([("traces", "grpc", "accepted"), ("traces", "grpc"), ("traces",),
                                        ("traces", "http", "too_large")])

"""Acknowledged batches larger than the downstream takes are split, not dropped (issue 16 item 6).

A real sidecar forwards to a real downstream (the OTLP sink's gRPC server, or its HTTP server)
whose receive limit is 4 MiB; requests of 6 MB and 20 MB are answered OK by the sidecar and
must arrive whole, in pieces. Before: RESOURCE_EXHAUSTED / 413 was permanent, 0 spans delivered.
"""

from __future__ import annotations

import random
import time

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from costctx.exporters.exporterhelper.split import BatchConfig, halves, split_to_max
from costctx.pdata.signals import LOGS, METRICS, TRACES, count_items
from tests.support.otlp import grpc_call
from tests.support.otlp_client import trace_request
from tests.support.sidecar import sidecar_config, start_sidecar
from tests.support.sink import PatientSink

MiB = 1024 * 1024
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_requests_larger_than_the_downstream_limit_arrive_whole(protocol):
    with PatientSink(http_port=0, max_request_bytes=4 * MiB) as sink:
        exporter = "otlp" if protocol == "grpc" else "otlphttp"
        config = sidecar_config(
            sink.grpc_port, processors=[], exporter=exporter, sink_http_port=sink.http_port,
            receivers={"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 64}}}},
            # Compressing and refusing 20 MB takes seconds on two loaded cores: a 2 s timeout
            # would make it a retried DEADLINE_EXCEEDED instead of the size refusal under test.
            exporters={exporter: {"timeout": "30s"}},
        )
        runner = start_sidecar(config)
        try:
            port = runner.sidecar.grpc_port
            # 100 spans of 60 kB (6 MB) and 400 of 50 kB (20 MB); random padding so gzip cannot
            # bring the HTTP body under the limit.
            sent = []
            for prefix, count, pad in (("six", 100, 60_000), ("twenty", 400, 50_000)):
                names = _names(prefix, count)
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(trace_request(names))
                rng = random.Random(count)
                for span in request.resource_spans[0].scope_spans[0].spans:
                    kv = span.attributes.add()
                    kv.key, kv.value.string_value = "pad", rng.randbytes(pad // 2).hex()
                payload = request.SerializeToString()
                assert len(payload) > 5 * MiB
                _, error = grpc_call(port, EXPORT, payload, timeout=120)
                assert error is None  # acknowledged
                sent += names
            assert sink.wait_for_spans(len(sent), timeout=180)
            assert sorted(s.name for s in sink.spans()) == sorted(sent)
            assert all(len(raw) <= 4 * MiB for raw in sink.raw["traces"])
            registry = runner.sidecar.metrics.registry
            assert registry.get_sample_value("costctx_exporter_split_batches_total",
                                             {"signal": "traces", "exporter": exporter}) >= 2
            assert not registry.get_sample_value("costctx_exporter_send_failed_items_total",
                                                 {"signal": "traces", "exporter": exporter})
        finally:
            runner.stop()


def test_a_single_span_too_large_is_given_up_on_and_counted_while_its_batch_mates_arrive():
    with PatientSink(max_request_bytes=1 * MiB) as sink:
        runner = start_sidecar(sidecar_config(sink.grpc_port, processors=[]))
        try:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(trace_request(_names("s", 10)))
            big = request.resource_spans[0].scope_spans[0].spans[3]
            kv = big.attributes.add()
            kv.key, kv.value.string_value = "pad", random.Random(1).randbytes(800_000).hex()
            assert grpc_call(runner.sidecar.grpc_port, EXPORT, request.SerializeToString(), timeout=30)[1] is None
            assert sink.wait_for_spans(9, timeout=30)
            registry = runner.sidecar.metrics.registry
            labels = {"signal": "traces", "exporter": "otlp"}
            for _ in range(100):
                if registry.get_sample_value("costctx_exporter_send_failed_items_total", labels):
                    break
                time.sleep(0.05)
            assert registry.get_sample_value("costctx_exporter_send_failed_items_total", labels) == 1
            assert registry.get_sample_value("costctx_exporter_send_failed_batches_total",
                                             {**labels, "reason": "too_large"}) == 1
            assert sorted(s.name for s in sink.spans()) == sorted(n for n in _names("s", 10) if n != "s-3")
        finally:
            runner.stop()


def test_configured_max_size_splits_before_sending():
    """`sending_queue.batch.max_size` (items) and `max_size_bytes`: the downstream never sees a
    larger request, and nothing is refused on the way."""
    with PatientSink() as sink:
        config = sidecar_config(sink.grpc_port, processors=[])
        config["exporters"]["otlp"]["sending_queue"] = {"batch": {"max_size": 30, "max_size_bytes": 64 * 1024}}
        runner = start_sidecar(config)
        try:
            names = _names("m", 100)
            assert grpc_call(runner.sidecar.grpc_port, EXPORT, trace_request(names, pad=2_000), timeout=30)[1] is None
            assert sink.wait_for_spans(100, timeout=30)
            sizes = [count_items(TRACES, r) for r in sink.requests["traces"]]
            assert max(sizes) <= 30 and sum(sizes) == 100
            assert all(len(raw) <= 64 * 1024 for raw in sink.raw["traces"])
            assert sorted(s.name for s in sink.spans()) == sorted(names)
        finally:
            runner.stop()


# -- the splitting itself, on every signal ---------------------------------------------------


def _metrics_request():
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    request = metrics_service_pb2.ExportMetricsServiceRequest()
    for r in range(2):
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        sm = rm.scope_metrics.add()
        sm.scope.name = "scope"
        gauge = sm.metrics.add(name=f"g{r}", unit="1").gauge
        for p in range(5):
            gauge.data_points.add(as_int=p, time_unix_nano=p)
        total = sm.metrics.add(name=f"s{r}").sum
        total.is_monotonic = True
        total.aggregation_temporality = 2
        for p in range(3):
            total.data_points.add(as_double=p)
    return request


def _logs_request():
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    request = logs_service_pb2.ExportLogsServiceRequest()
    for r in range(3):
        rl = request.resource_logs.add(schema_url="s")
        sl = rl.scope_logs.add()
        for i in range(4):
            sl.log_records.add().body.string_value = f"log {r}-{i}"
    return request


@pytest.mark.parametrize("signal", [TRACES, METRICS, LOGS], ids=lambda s: s.name)
def test_pieces_hold_every_item_once_under_its_resource_and_scope(signal):
    if signal is TRACES:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(trace_request(_names("t", 7)))
    elif signal is METRICS:
        request = _metrics_request()
    else:
        request = _logs_request()
    payload = request.SerializeToString()
    total = count_items(signal, request)
    for max_items in (1, 2, 3, total):
        pieces = split_to_max(signal, payload, total, max_items, None)
        assert all(items <= max_items for _, items in pieces)
        merged = signal.request_type()
        for body, items in pieces:
            piece = signal.request_type.FromString(body)
            assert count_items(signal, piece) == items
            merged.MergeFrom(piece)
        assert count_items(signal, merged) == total
        # Same leaves, in order, each under the same resource and scope as before.
        assert _flat(signal, merged) == _flat(signal, request)
    two = halves(signal, payload)
    assert two is not None and sum(items for _, items in two) == total


def _flat(signal, request) -> list:
    out = []
    if signal is TRACES:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                out += [(rs.resource.SerializeToString(), ss.scope.name, s.name) for s in ss.spans]
    elif signal is LOGS:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                out += [(rl.resource.SerializeToString(), rl.schema_url, r.body.string_value) for r in sl.log_records]
    else:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    extra = (data.is_monotonic, data.aggregation_temporality) if kind == "sum" else ()
                    out += [(rm.resource.SerializeToString(), m.name, extra, p.SerializeToString())
                            for p in data.data_points]
    return out


def test_a_single_item_cannot_be_halved():
    assert halves(TRACES, trace_request(["one"])) is None
    assert BatchConfig(sizer="bytes", max_size=100).limits() == (None, 100)
    assert BatchConfig(max_size=10, max_size_bytes=100).limits() == (10, 100)

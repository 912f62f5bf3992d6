"""memory_limiter: well past the limit, clients see retryable refusals and nothing acknowledged is lost."""

from __future__ import annotations

import time

import grpc
import pytest
import requests

from bench.memory_attacks import PeakSampler
from costctx.service.config.loader import build_config
from tests.support.otlp_client import SpanStreamer, trace_request
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.wait import wait_until

MiB = 1024 * 1024
LIMIT_MIB = 160
SPIKE_MIB = 40  # headroom for four concurrent 1 MiB requests in flight (decoded and re-encoded)
HELD_OFF = 20  # refusals each client sees before the push stops (each retry waits 50 ms)


def test_config_rejects_a_spike_over_the_limit():
    with pytest.raises(ValueError, match="spike_limit_mib"):
        build_config(
            sidecar_config(4317, processors=["memory_limiter"],
                           processor_config={"memory_limiter": {"limit_mib": 100, "spike_limit_mib": 100}}),
            {},
        )


def test_pushing_well_past_the_memory_limit(sink, tmp_path):
    config = with_fixed_ports(sidecar_config(
        sink.grpc_port,
        processors=["memory_limiter"],
        processor_config={"memory_limiter": {"limit_mib": LIMIT_MIB, "spike_limit_mib": SPIKE_MIB,
                                             "check_interval": "100ms"}},
        # A queue far larger than the memory: only the limiter can stop the growth.
        exporters={"otlp": {"sending_queue": {"queue_size": 100_000}}},
    ))
    process = SidecarProcess(config, tmp_path).start()
    try:
        sink.refuse(1_000_000)  # the downstream is down: everything accepted stays in memory
        with PeakSampler(process.proc.pid) as rss:
            # ~1 MiB per request, four clients: well over the limit within seconds if nothing stops it.
            streamers = [
                SpanStreamer(process.grpc_target, f"mem{i}", batch_size=250, interval=0.0, pad=4000).start()
                for i in range(4)
            ]
            # Until the limiter has held every client off for a while (not a fixed window, which a
            # loaded machine may spend before the limit is even reached).
            def held_off() -> bool:
                return all(s.ledger.refusals.get("UNAVAILABLE", 0) >= HELD_OFF for s in streamers)

            pushed_past = wait_until(held_off, timeout=120, interval=0.1)
            ledgers = [s.stop() for s in streamers]
            assert pushed_past, f"the limiter did not hold every client off: {[s.refusals for s in ledgers]}"
        acked = set().union(*(ledger.acknowledged for ledger in ledgers))
        refused = sum(ledger.refusals.get("UNAVAILABLE", 0) for ledger in ledgers)
        pushed_mib = (len(acked) * 4000) / MiB

        print(f"memory_limiter: accepted {pushed_mib:.0f} MiB, {refused} refusals, "
              f"peak RSS {rss.peak / MiB:.0f} MiB (limit {LIMIT_MIB}, soft {LIMIT_MIB - SPIKE_MIB})")
        assert process.proc.poll() is None, "the sidecar was killed"
        assert refused >= HELD_OFF * len(ledgers), "clients saw retryable refusals"
        assert not any(ledger.errors for ledger in ledgers), "only retryable refusals"
        assert rss.peak < LIMIT_MIB * MiB, f"peak RSS {rss.peak / MiB:.0f} MiB over the {LIMIT_MIB} MiB limit"
        assert process.metric("costctx_memory_limiter_refused_requests_total", {"signal": "traces"}) > 0
        assert pushed_mib > 20  # it did accept data before refusing

        # The downstream comes back: every acknowledged span arrives, and the limiter lets go.
        sink.refuse(0)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not {s.name for s in sink.spans()} >= acked:
            time.sleep(0.2)
        missing = acked - {s.name for s in sink.spans()}
        assert not missing, f"{len(missing)} acknowledged spans lost"

        channel = grpc.insecure_channel(process.grpc_target)
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        deadline = time.monotonic() + 30
        while True:
            try:
                export(trace_request(["after"]), timeout=5)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() < deadline, "memory never fell below the soft limit"
                time.sleep(0.5)
        channel.close()
    finally:
        process.close()


def test_refusals_are_protocol_correct_on_every_signal_and_transport(make_sidecar):
    # A soft limit below any Python process: everything is refused, before it is even decoded.
    runner = make_sidecar(
        processors=["memory_limiter"],
        processor_config={"memory_limiter": {"limit_mib": 2, "spike_limit_mib": 1, "retry_after": "3s"}},
    )
    sidecar = runner.sidecar
    from costctx.exporters.otlp.grpc_sender import retry_delay_from_metadata
    from costctx.pdata.signals import SIGNALS

    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    for signal in SIGNALS.values():
        for body in (trace_request(["x"]) if signal.name == "traces" else b"", b"\xff garbage"):
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(signal.grpc_method)(body, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert retry_delay_from_metadata(refused.value.trailing_metadata()) == 3.0
            response = requests.post(
                f"http://127.0.0.1:{sidecar.http_port}{signal.http_path}",
                data=body,
                headers={"Content-Type": "application/x-protobuf"},
                timeout=5,
            )
            assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    channel.close()
    refused = sidecar.metrics.registry.get_sample_value
    limiter = {"processor": "memory_limiter"}
    assert refused("costctx_memory_limiter_refused_requests_total", {**limiter, "signal": "logs"}) == 4
    assert refused("costctx_receiver_requests_total", {"signal": "traces", "transport": "http",
                                                        "result": "memory_limited"}) == 2


def test_passing_spans_leaves_the_batch_as_received():
    """It acts at admission: on the pipeline's view path the batch is neither scanned nor
    parsed, and leaves as the bytes received."""
    from costctx.pdata.codec.python import PythonCodec
    from costctx.pdata.view_batch import ViewBatch
    from tests.support.otlp_client import trace_request
    from tests.support.processors import standalone_processor

    processor = standalone_processor("memory_limiter", limit_mib=100_000)
    assert processor.on_view and processor.watched_keys() == frozenset()
    raw = trace_request(["a", "b"])
    batch = ViewBatch(PythonCodec(), raw, frozenset())
    assert processor.process_view(batch) is batch
    assert batch._view is None and batch._trace is None
    assert batch.payload() is raw


def test_over_the_soft_limit_the_collection_reaches_frozen_objects():
    """The running sidecar freezes what survives between requests (service/gc_tuning.py): a
    cycle that formed among frozen objects must still be freed when memory is short."""
    import gc
    import weakref

    from costctx.processors.memory_limiter.config import MemoryLimiterConfig
    from costctx.processors.memory_limiter.metrics import memory_limiter_metrics
    from costctx.processors.memory_limiter.processor import MemoryLimiter
    from costctx.telemetry.metrics import ComponentMetrics, SidecarMetrics

    class Node:
        other: object = None

    metrics = memory_limiter_metrics(ComponentMetrics(SidecarMetrics(), "processor", "memory_limiter"))
    limiter = MemoryLimiter(MemoryLimiterConfig(limit_mib=2, check_interval=0.001), metrics)  # always over
    a, b = Node(), Node()
    gc.collect()
    gc.freeze()
    try:
        a.other, b.other = b, a
        watched = weakref.ref(a)
        del a, b
        time.sleep(0.002)  # past check_interval since the limiter's first sample
        limiter.sample()
        assert limiter.refusing
        assert watched() is None
    finally:
        gc.unfreeze()

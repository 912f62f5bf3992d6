"""What the sending queue keeps: a batch leaves memory once the downstream has it.

A real exporter (gRPC sender) sends merged batches to a real OTLP sink on loopback. Once
everything is delivered, no queued item may still be referenced: an idle consumer that kept
its last batch while waiting for the next held ~2 MB each at the bench's settings (~20 MB
across 10 consumers, a fifth of the sidecar's peak at 10,000 spans/s).
"""

from __future__ import annotations

import asyncio
import weakref

from costctx.exporters.exporterhelper.queue import MemoryQueue, QueueItem
from costctx.exporters.otlp.config import OtlpGrpcExporterConfig
from costctx.exporters.otlp.exporter import QueuedExporter
from costctx.exporters.otlp.metrics import ExporterMetrics
from costctx.pdata.signals import TRACES
from costctx.telemetry.metrics import SidecarMetrics
from tests.support.otlp_client import trace_request
from tests.support.sink import PatientSink


class RecordingQueue(MemoryQueue):
    """A memory queue that remembers (weakly) every item put on it."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.seen: list[weakref.ref[QueueItem]] = []

    def put(self, item: QueueItem) -> None:
        self.seen.append(weakref.ref(item))
        super().put(item)


def _deliver(sink_port: int, batch: dict | None, requests: int) -> tuple[int, list[QueueItem]]:
    """Submit `requests` requests of 5 spans three times, wait until they were sent and every
    consumer is idle again, still running: (items queued, those still alive then)."""
    config = OtlpGrpcExporterConfig(endpoint=f"127.0.0.1:{sink_port}", insecure=True, compression="none",
                                    sending_queue={"num_consumers": 4, **({"batch": batch} if batch else {})})
    queue = RecordingQueue(1000)

    async def scenario() -> list[QueueItem]:
        exporter = QueuedExporter("otlp", config, ExporterMetrics(SidecarMetrics()), queue=queue)
        await exporter.start()
        try:
            for round_ in range(3):  # several merges, so that more than one consumer sends one
                for i in range(requests):
                    payload = trace_request([f"r{round_}-{i}-{n}" for n in range(5)])
                    assert exporter.submit(TRACES, payload, 5)
                assert await exporter.drain(30)
            for _ in range(10):  # the consumers back at waiting for their next batch
                await asyncio.sleep(0.01)
            return [item for ref in queue.seen if (item := ref()) is not None]
        finally:
            await exporter.stop()

    alive = asyncio.run(scenario())
    return len(queue.seen), alive


def test_merged_batches_leave_memory_once_delivered():
    with PatientSink() as sink:
        queued, alive = _deliver(sink.grpc_port, {"flush_timeout": "50ms", "min_size": 20}, requests=8)
        assert sink.wait_for_spans(3 * 8 * 5)
    assert queued == 24
    assert alive == []


def test_single_batches_leave_memory_once_delivered():
    with PatientSink() as sink:
        queued, alive = _deliver(sink.grpc_port, None, requests=6)
        assert sink.wait_for_spans(3 * 6 * 5)
    assert queued == 18
    assert alive == []

"""Pipelines, as in the Collector: traces run through processors; metrics and logs pass through."""

from __future__ import annotations

import logging
from functools import partial

from costctx.component.processor import Processor
from costctx.exporters.otlp.exporter import QueuedExporter
from costctx.pdata import TraceBatch
from costctx.pdata.signals import TRACES, Signal
from costctx.telemetry.metrics import SidecarMetrics

log = logging.getLogger("costctx.pipeline")


class TracesPipeline:
    def __init__(self, processors: list[Processor], exporters: list[QueuedExporter], metrics: SidecarMetrics) -> None:
        self.processors = processors
        self.exporters = exporters
        self.metrics = metrics
        for index, processor in enumerate(processors):
            # What a processor releases later continues with the processors after it.
            processor.bind(partial(self._run, index + 1, acknowledged=True))

    def has_capacity(self) -> bool:
        return all(e.has_capacity() for e in self.exporters)

    def consume(self, batch: TraceBatch) -> None:
        """Run an accepted batch through every processor and queue what comes out."""
        self._run(0, batch, acknowledged=False)

    def _run(self, start: int, batch: TraceBatch, acknowledged: bool) -> None:
        for processor in self.processors[start:]:
            try:
                result = processor.process(batch)
            except Exception:
                # A processor bug must not lose spans: forward the batch as it stands.
                log.exception("processor %s failed; forwarding the batch without it", processor.name)
                self.metrics.processor_errors.labels(processor.name).inc()
                result = batch
            if result is None or result.is_empty():
                return
            batch = result
        payload = batch.request.SerializeToString()
        spans = batch.span_count()
        for exporter in self.exporters:
            # Admission was checked before the batch was accepted; by now it is ours to deliver.
            exporter.submit(TRACES, payload, spans, acknowledged=True)

    async def start(self) -> None:
        for processor in self.processors:
            await processor.start()

    def tick(self, now: float) -> None:
        for processor in self.processors:
            try:
                processor.tick(now)
            except Exception:
                log.exception("processor %s failed in tick", processor.name)
                self.metrics.processor_errors.labels(processor.name).inc()

    def shutdown(self) -> None:
        """Release everything processors hold, in pipeline order, so nothing stays behind."""
        for processor in self.processors:
            try:
                processor.shutdown()
            except Exception:
                log.exception("processor %s failed to release on shutdown", processor.name)
                self.metrics.processor_errors.labels(processor.name).inc()

    async def close(self) -> None:
        for processor in self.processors:
            await processor.close()


class PassThroughPipeline:
    """Metrics and logs: forwarded byte for byte as received."""

    def __init__(self, signal: Signal, exporters: list[QueuedExporter]) -> None:
        self.signal = signal
        self.exporters = exporters

    def has_capacity(self) -> bool:
        return all(e.has_capacity() for e in self.exporters)

    def consume(self, payload: bytes, items: int) -> None:
        for exporter in self.exporters:
            exporter.submit(self.signal, payload, items, acknowledged=True)

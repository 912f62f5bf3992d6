"""Pipelines, as in the Collector: traces run through processors; metrics and logs pass through."""

from __future__ import annotations

import logging
from functools import partial

from prometheus_client import Gauge

from costctx.component.processor import Processor
from costctx.exporters.otlp.exporter import QueuedExporter
from costctx.pdata import TraceBatch
from costctx.pdata.codec import Codec, select_codec
from costctx.pdata.signals import TRACES, Signal
from costctx.pdata.view_batch import ViewBatch
from costctx.telemetry.metrics import SidecarMetrics

log = logging.getLogger("costctx.pipeline")


class TracesPipeline:
    def __init__(self, processors: list[Processor], exporters: list[QueuedExporter], metrics: SidecarMetrics,
                 codec: Codec | None = None) -> None:
        self.processors = processors
        self.exporters = exporters
        self.metrics = metrics
        self.codec = codec if codec is not None else select_codec()
        # The keys any processor reads on the view: the only attributes a scan decodes.
        self.watched: frozenset[str] = frozenset().union(*(p.watched_keys() for p in processors))
        for index, processor in enumerate(processors):
            # What a processor releases later continues with the processors after it.
            processor.bind(partial(self._run, index + 1, acknowledged=True))

    def has_capacity(self) -> bool:
        return all(e.has_capacity() for e in self.exporters)

    def batch(self, raw: bytes, spans: int | None = None) -> ViewBatch:
        """A received request (serialized ExportTraceServiceRequest, `spans` spans if counted)
        as the pipeline carries it."""
        return ViewBatch(self.codec, raw, self.watched, spans)

    def received(self, raw: bytes) -> ViewBatch:
        """A received request's bytes, validated as protobuf would (CodecError if not) and
        counted, without a protobuf parse: scanned here when the first processor reads the view
        (the scan it makes anyway), else only checked (nothing reads the spans: forwarded as is)."""
        if self.processors and self.processors[0].on_view:
            batch = ViewBatch(self.codec, raw, self.watched)
            batch.lazy_spans = True  # scanned only: the span views are the processors' to make
            _ = batch.view
            return batch
        return ViewBatch(self.codec, raw, self.watched, self.codec.check(raw))

    def consume(self, batch: ViewBatch | TraceBatch) -> None:
        """Run an accepted batch through every processor and queue what comes out."""
        self._run(0, batch, acknowledged=False)

    def _run(self, start: int, batch: ViewBatch | TraceBatch, acknowledged: bool) -> None:
        if isinstance(batch, TraceBatch):  # released later by a slow-path processor
            batch = ViewBatch.of_trace(self.codec, batch, self.watched)
        for processor in self.processors[start:]:
            result: ViewBatch | TraceBatch | None
            try:
                if processor.on_view:
                    batch.lazy_spans = processor.columnar  # its first read of the view makes them or not
                    result = processor.process_view(batch)
                else:
                    trace = batch.trace
                    result = processor.process(trace)
                    batch.sync_from_trace()
                    if result is trace:
                        result = batch
            except Exception:
                # A processor bug must not lose spans: forward the batch as it stands.
                log.exception("processor %s failed; forwarding the batch without it", processor.name)
                self.metrics.processor_errors.labels(processor.name).inc()
                result = batch
            if result is None or result.is_empty():
                return
            if isinstance(result, TraceBatch):
                result = ViewBatch.of_trace(self.codec, result, self.watched)
            batch = result
        payload = batch.payload()
        spans = batch.span_count()
        for exporter in self.exporters:
            # Admission was checked before the batch was accepted; by now it is ours to deliver.
            exporter.submit(TRACES, payload, spans, acknowledged=True)

    async def start(self) -> None:
        log.info("codec: %s", self.codec.name)
        # Also on /metrics, where a benchmark or an operator can check which codec a sidecar runs.
        self.metrics.family(Gauge, "costctx_codec_info", "The codec the traces pipeline scans and encodes with "
                            "(1 on the one in use; COSTCTX_CODEC picks it).", ["codec"]).labels(self.codec.name).set(1)
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

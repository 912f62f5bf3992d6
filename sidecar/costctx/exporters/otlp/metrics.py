"""The exporters' metrics, labelled by exporter id (`exporter="otlp/b"`; every family once per
registry, shared by every exporter instance, which passes its id as the `exporter` label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from costctx.telemetry.metrics import SidecarMetrics


class ExporterMetrics:
    def __init__(self, metrics: SidecarMetrics) -> None:
        self.items_forwarded = metrics.family(
            Counter,
            "costctx_exporter_sent_items",
            "Items the downstream accepted, by signal and exporter.",
            ["signal", "exporter"],
        )
        self.items_rejected_downstream = metrics.family(
            Counter,
            "costctx_exporter_rejected_items",
            "Items the downstream rejected in a partial success, by signal and exporter.",
            ["signal", "exporter"],
        )
        self.export_failures = metrics.family(
            Counter,
            "costctx_exporter_send_failed_batches",
            "Batches the exporter gave up on (non-retryable error or retries exhausted).",
            ["signal", "exporter", "reason"],
        )
        self.export_failed_items = metrics.family(
            Counter,
            "costctx_exporter_send_failed_items",
            "Items in batches the exporter gave up on.",
            ["signal", "exporter"],
        )
        self.export_splits = metrics.family(
            Counter,
            "costctx_exporter_split_batches",
            "Requests the downstream refused as too large (gRPC RESOURCE_EXHAUSTED on size, HTTP 413) "
            "and that were sent again in halves.",
            ["signal", "exporter"],
        )
        self.export_retries = metrics.family(
            Counter,
            "costctx_exporter_retries",
            "Retried send attempts, by exporter and reason.",
            ["exporter", "reason"],
        )
        self.merged_batches = metrics.family(
            Counter,
            "costctx_exporter_merged_batches",
            "Queued batches sent merged with others in one request (sending_queue.batch.flush_timeout).",
            ["signal", "exporter"],
        )
        self.queue_size = metrics.family(
            Gauge,
            "costctx_exporter_queue_size",
            "Batches waiting in the sending queue.",
            ["exporter"],
        )
        self.queue_capacity = metrics.family(
            Gauge,
            "costctx_exporter_queue_capacity",
            "Sending queue capacity in batches.",
            ["exporter"],
        )
        self.queue_overflow = metrics.family(
            Counter,
            "costctx_exporter_queue_overflow_batches",
            "Batches queued past capacity because they were already acknowledged (released holds).",
            ["exporter"],
        )
        self.resent_batches = metrics.family(
            Counter,
            "costctx_exporter_resent_batches",
            "Batches reloaded from the persistent queue after a restart and delivered; each may "
            "duplicate one the downstream already had (delivery is at least once).",
            ["signal", "exporter"],
        )
        self.resent_items = metrics.family(
            Counter,
            "costctx_exporter_resent_items",
            "Items in resent batches (possible duplicates at the downstream).",
            ["signal", "exporter"],
        )
        self.queue_stored_bytes = metrics.family(
            Gauge,
            "costctx_exporter_queue_stored_bytes",
            "Bytes of batches held on disk by the persistent queue.",
            ["exporter"],
        )
        self.queue_persisted_on_stop = metrics.family(
            Counter,
            "costctx_exporter_queue_persisted_batches",
            "Batches left unsent at shutdown and kept on disk for the next start.",
            ["exporter"],
        )

"""Internal metrics on a per-sidecar Prometheus registry (several sidecars may share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SidecarMetrics:
    """Counters every component reports into; served on the admin port at /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests_received = Counter(
            "costctx_receiver_requests",
            "Export requests received, by signal, transport and result.",
            ["signal", "transport", "result"],
            registry=r,
        )
        self.items_received = Counter(
            "costctx_receiver_accepted_items",
            "Spans, metric data points or log records accepted.",
            ["signal", "transport"],
            registry=r,
        )
        self.items_refused = Counter(
            "costctx_receiver_refused_items",
            "Items refused to the client, by signal and reason.",
            ["signal", "reason"],
            registry=r,
        )
        self.items_forwarded = Counter(
            "costctx_exporter_sent_items",
            "Items the downstream accepted, by signal and exporter.",
            ["signal", "exporter"],
            registry=r,
        )
        self.items_rejected_downstream = Counter(
            "costctx_exporter_rejected_items",
            "Items the downstream rejected in a partial success, by signal and exporter.",
            ["signal", "exporter"],
            registry=r,
        )
        self.export_failures = Counter(
            "costctx_exporter_send_failed_batches",
            "Batches the exporter gave up on (non-retryable error or retries exhausted).",
            ["signal", "exporter", "reason"],
            registry=r,
        )
        self.export_failed_items = Counter(
            "costctx_exporter_send_failed_items",
            "Items in batches the exporter gave up on.",
            ["signal", "exporter"],
            registry=r,
        )
        self.export_retries = Counter(
            "costctx_exporter_retries",
            "Retried send attempts, by exporter and reason.",
            ["exporter", "reason"],
            registry=r,
        )
        self.queue_size = Gauge(
            "costctx_exporter_queue_size",
            "Batches waiting in the sending queue.",
            ["exporter"],
            registry=r,
        )
        self.queue_capacity = Gauge(
            "costctx_exporter_queue_capacity",
            "Sending queue capacity in batches.",
            ["exporter"],
            registry=r,
        )
        self.queue_overflow = Counter(
            "costctx_exporter_queue_overflow_batches",
            "Batches queued past capacity because they were already acknowledged (released holds).",
            ["exporter"],
            registry=r,
        )
        self.resent_batches = Counter(
            "costctx_exporter_resent_batches",
            "Batches reloaded from the persistent queue after a restart and delivered; each may "
            "duplicate one the downstream already had (delivery is at least once).",
            ["signal", "exporter"],
            registry=r,
        )
        self.resent_items = Counter(
            "costctx_exporter_resent_items",
            "Items in resent batches (possible duplicates at the downstream).",
            ["signal", "exporter"],
            registry=r,
        )
        self.queue_stored_bytes = Gauge(
            "costctx_exporter_queue_stored_bytes",
            "Bytes of batches held on disk by the persistent queue.",
            ["exporter"],
            registry=r,
        )
        self.queue_persisted_on_stop = Counter(
            "costctx_exporter_queue_persisted_batches",
            "Batches left unsent at shutdown and kept on disk for the next start.",
            ["exporter"],
            registry=r,
        )
        self.processor_errors = Counter(
            "costctx_processor_errors",
            "Batches a processor failed on; the batch is forwarded unprocessed rather than lost.",
            ["processor"],
            registry=r,
        )
        # The latency a request adds before its response: processors plus enqueueing (sending is
        # asynchronous). Buckets from 50 us (pass-through) to 1 s (a pathological batch).
        self.pipeline_duration = Histogram(
            "costctx_pipeline_duration_seconds",
            "Time to run an accepted request through the pipeline and enqueue it, by signal.",
            ["signal"],
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )

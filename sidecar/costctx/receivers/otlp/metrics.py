"""The OTLP receiver's metrics (every family once per registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from costctx.telemetry.metrics import SidecarMetrics


class ReceiverMetrics:
    def __init__(self, metrics: SidecarMetrics) -> None:
        self.requests_received = metrics.family(
            Counter,
            "costctx_receiver_requests",
            "Export requests received, by signal, transport and result.",
            ["signal", "transport", "result"],
        )
        self.items_received = metrics.family(
            Counter,
            "costctx_receiver_accepted_items",
            "Spans, metric data points or log records accepted.",
            ["signal", "transport"],
        )
        self.items_refused = metrics.family(
            Counter,
            "costctx_receiver_refused_items",
            "Items refused to the client, by signal and reason.",
            ["signal", "reason"],
        )
        # The latency a request adds before its response: processors plus enqueueing (sending is
        # asynchronous). Buckets from 50 us (pass-through) to 1 s (a pathological batch).
        self.pipeline_duration = metrics.family(
            Histogram,
            "costctx_pipeline_duration_seconds",
            "Time to run an accepted request through the pipeline and enqueue it, by signal.",
            ["signal"],
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )

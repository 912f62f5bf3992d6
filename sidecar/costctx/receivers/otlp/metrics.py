"""The OTLP receiver's metrics (every family once per registry)."""

from __future__ import annotations

from prometheus_client import Counter

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

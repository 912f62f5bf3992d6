"""The OTLP receiver's metrics (every family once per registry)."""

from __future__ import annotations

from typing import Any

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
        # Bound series, made on first use (a series appears once it has counted something).
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._accepted: dict[tuple[str, str], AcceptedTally] = {}

    def request_counter(self, signal: str, transport: str, result: str) -> Any:
        """The `requests` series of one signal, transport and result, bound once: every
        request counts itself, and `.labels()` costs ~2 us a call."""
        key = (signal, transport, result)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests_received.labels(signal, transport, result)
        return child

    def accepted(self, signal: str, transport: str) -> AcceptedTally:
        tally = self._accepted.get((signal, transport))
        if tally is None:
            tally = self._accepted[(signal, transport)] = AcceptedTally(
                self.request_counter(signal, transport, "accepted"), self.items_received.labels(signal, transport),
                self.pipeline_duration.labels(signal))
        return tally


class AcceptedTally:
    """An accepted request's three series (requests, items, pipeline duration) of one signal
    and transport, bound once and recorded in one call."""

    __slots__ = ("_requests", "_items", "_duration")

    def __init__(self, requests: Any, items: Any, duration: Any) -> None:
        self._requests, self._items, self._duration = requests, items, duration

    def record(self, items: int, seconds: float) -> None:
        self._duration.observe(seconds)
        self._items.inc(items)
        self._requests.inc()

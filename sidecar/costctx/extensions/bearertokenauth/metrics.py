"""The bearertokenauth extension's metrics (the family once per registry)."""

from __future__ import annotations

from prometheus_client import Counter

from costctx.telemetry.metrics import SidecarMetrics


def auth_refused_requests(metrics: SidecarMetrics) -> Counter:
    """`.labels(server)`: grpc, http or admin."""
    return metrics.family(
        Counter,
        "costctx_auth_refused_requests",
        "Requests refused for a missing or invalid bearer token, by server.",
        ["server"],
    )

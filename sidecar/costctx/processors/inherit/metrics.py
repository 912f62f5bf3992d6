"""Prometheus metrics of the `inherit` processor, registered once per sidecar registry
(`context.shared("inherit.metrics", ...)`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from costctx.telemetry.metrics import SidecarMetrics


class InheritMetrics:
    """Labelled by processor name, so `inherit` and `inherit/other` can share one registry."""

    hold_spans: Gauge
    hold_bytes: Gauge
    hold_traces: Gauge
    cache_entries: Gauge
    trace_entries: Gauge

    def __init__(self, metrics: SidecarMetrics) -> None:
        r = metrics.registry
        self.repaired_fields = Counter(
            "costctx_inherit_repaired_fields",
            "Context fields filled on spans, by field and source (ancestor, trace, resource).",
            ["processor", "field", "source"],
            registry=r,
        )
        self.conflicts = Counter(
            "costctx_inherit_conflicts",
            "Fields a span carried with a value different from its nearest ancestor's (kept as carried).",
            ["processor", "field"],
            registry=r,
        )
        self.held_spans = Counter(
            "costctx_inherit_held_spans",
            "Spans held to wait for an ancestor that had not arrived yet.",
            ["processor"],
            registry=r,
        )
        self.released_spans = Counter(
            "costctx_inherit_released_spans",
            "Held spans released, by reason (ancestor, timeout, overflow, shutdown).",
            ["processor", "reason"],
            registry=r,
        )
        self.missing_spans = Counter(
            "costctx_inherit_missing_spans",
            "Held spans released still lacking a required field, by release reason.",
            ["processor", "reason"],
            registry=r,
        )
        gauges = {
            "hold_spans": ("costctx_inherit_hold_spans", "Spans in the hold now."),
            "hold_bytes": ("costctx_inherit_hold_bytes", "Bytes of spans in the hold now."),
            "hold_traces": ("costctx_inherit_hold_traces", "Traces with held spans now."),
            "cache_entries": ("costctx_inherit_cache_entries", "Spans remembered in the ancestor cache."),
            "trace_entries": ("costctx_inherit_trace_entries", "Traces remembered for the trace-level fallback."),
        }
        for attr, (metric, doc) in gauges.items():
            setattr(self, attr, Gauge(metric, doc, ["processor"], registry=r))

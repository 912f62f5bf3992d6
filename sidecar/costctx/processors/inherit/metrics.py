"""The `inherit` processor's metrics, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

from typing import Any

from costctx.telemetry.metrics import ComponentMetrics


class InheritMetrics:
    # gauges of this instance, each set to a function reading its state
    hold_spans: Any
    hold_bytes: Any
    hold_traces: Any
    cache_entries: Any
    trace_entries: Any

    def __init__(self, m: ComponentMetrics) -> None:
        self.repaired_fields = m.counter(
            "costctx_inherit_repaired_fields",
            "Context fields filled on spans, by field and source (ancestor, trace, resource).",
            ["field", "source"],
        )
        self.conflicts = m.counter(
            "costctx_inherit_conflicts",
            "Fields a span carried with a value different from its nearest ancestor's (kept as carried).",
            ["field"],
        )
        self.held_spans = m.counter(
            "costctx_inherit_held_spans",
            "Spans held to wait for an ancestor that had not arrived yet.",
        )
        self.released_spans = m.counter(
            "costctx_inherit_released_spans",
            "Held spans released, by reason (ancestor, timeout, overflow, shutdown).",
            ["reason"],
        )
        self.missing_spans = m.counter(
            "costctx_inherit_missing_spans",
            "Held spans released still lacking a required field, by release reason.",
            ["reason"],
        )
        self.evictions = m.counter(
            "costctx_inherit_evictions",
            "Spans pushed out by a full structure, by structure (hold: released unrepaired; cache: "
            "forgotten as an ancestor) and source (the service of the span, or of the trace's first "
            "held span).",
            ["structure", "source"],
        )
        self.disputed_ancestors = m.counter(
            "costctx_inherit_disputed_ancestors",
            "Span ids sent again with different context values (a spoofed or re-sent parent): the "
            "ancestor repairs nothing from then on.",
        )
        self.restored_spans = m.counter(
            "costctx_inherit_restored_spans",
            "Held spans a previous run left on disk (persistent queue configured), held again on start.",
        )
        gauges = {
            "hold_spans": ("costctx_inherit_hold_spans", "Spans in the hold now."),
            "hold_bytes": ("costctx_inherit_hold_bytes", "Bytes of spans in the hold now."),
            "hold_traces": ("costctx_inherit_hold_traces", "Traces with held spans now."),
            "cache_entries": ("costctx_inherit_cache_entries", "Spans remembered in the ancestor cache."),
            "trace_entries": ("costctx_inherit_trace_entries", "Traces remembered for the trace-level fallback."),
        }
        for attr, (metric, doc) in gauges.items():
            setattr(self, attr, m.gauge(metric, doc))

    def count_evictions(self, hold_evicted, cache) -> None:
        """Move the hold's and the cache's eviction tallies into the counters."""
        for structure, tally in (("hold", hold_evicted), ("cache", cache.evicted)):
            if tally:
                for source, count in tally.items():
                    self.evictions.labels(structure, source).inc(count)
                tally.clear()
        if cache.disputed:
            self.disputed_ancestors.inc(cache.disputed)
            cache.disputed = 0

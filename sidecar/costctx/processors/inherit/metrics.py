"""The `inherit` processor's metrics, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import Counter

from costctx.telemetry.metrics import ComponentMetrics

# Distinct (source, fields) keys counted before they are folded (RepairedCounts.add).
MAX_REPAIRED_KEYS = 4096


class SyncedCounter(Counter):
    """A Counter family some of whose counts are kept in plain ints between scrapes: each owner
    registers a sync (`syncs`), run before every collect, that moves its counts into the
    children. The hot path then adds ints, not one locked `inc` per child per batch."""

    syncs: dict  # owner's id -> its sync

    def collect(self):  # type: ignore[override]
        for sync in list(getattr(self, "syncs", {}).values()):
            sync()
        return super().collect()


class RepairedCounts:
    """costctx_inherit_repaired_fields of one processor: counted per batch by (source, fields
    repaired) -> spans, the keys the decisions' counts already have, and expanded into the
    per-(field, source) children only when the family is collected (a scrape, or a test
    reading a sample)."""

    def __init__(self, family: SyncedCounter, component_id: str) -> None:
        self._family = family
        self._component_id = component_id
        self.totals: dict[tuple[str, tuple[str, ...]], int] = {}  # since the last fold
        self._synced: dict[tuple[str, tuple[str, ...]], int] = {}  # of totals, in the children
        self._children: dict[tuple[str, str], Any] = {}  # (field, source) -> child
        self._lock = threading.Lock()  # a scrape's sync against another's, or a fold
        syncs = getattr(family, "syncs", None)
        if syncs is None:
            syncs = family.syncs = {}
        before = syncs.get(component_id)
        if before is not None:
            before()  # a processor rebuilt under the same id: the one before's counts kept
        syncs[component_id] = self.sync

    def add(self, counts: dict[tuple[str, tuple[str, ...]], int]) -> None:
        """A batch's counts (the event loop's thread only: a sync reads a copy of `totals`)."""
        totals = self.totals
        get = totals.get
        for key, count in counts.items():
            totals[key] = get(key, 0) + count
        if len(totals) > MAX_REPAIRED_KEYS:
            with self._lock:  # synced, then forgotten: the children keep the counts
                self._sync_locked()
                self.totals = {}
                self._synced = {}

    def sync(self) -> None:
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        synced, children = self._synced, self._children
        for key, count in list(self.totals.items()):  # one atomic copy
            done = synced.get(key, 0)
            if count == done:
                continue
            source, fields = key
            for field in fields:
                child = children.get((field, source))
                if child is None:
                    child = children[(field, source)] = self._family.labels(self._component_id, field, source)
                child.inc(count - done)
            synced[key] = count


class InheritMetrics:
    # gauges of this instance, each set to a function reading its state
    hold_spans: Any
    hold_bytes: Any
    hold_traces: Any
    cache_entries: Any
    trace_entries: Any

    def __init__(self, m: ComponentMetrics) -> None:
        family = m.sidecar.family(
            SyncedCounter, "costctx_inherit_repaired_fields",
            "Context fields filled on spans, by field and source (ancestor, trace, resource).",
            (m.kind_label, "field", "source"),
        )
        self.repaired_fields = RepairedCounts(family, m.component_id)  # type: ignore[arg-type]
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

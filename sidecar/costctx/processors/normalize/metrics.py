"""The normalize processor's counters, registered once per sidecar metrics registry
(`context.shared("normalize.metrics", ...)`)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class NormalizeMetrics:
    renamed: Counter
    duplicates: Counter
    conflicts: Counter
    coerced: Counter
    uncoercible: Counter
    values: Counter


def register_normalize_metrics(registry: CollectorRegistry) -> NormalizeMetrics:
    """Once per registry (a registry refuses duplicates): call through ProcessorContext.shared."""
    labels = ["key", "where"]
    return NormalizeMetrics(
        renamed=Counter("costctx_normalize_renamed", "Keys renamed to their canonical key, by canonical key and "
                        "place (span, event, resource).", labels, registry=registry),
        duplicates=Counter("costctx_normalize_duplicates", "Old keys dropped because the canonical key carried "
                           "the same value.", labels, registry=registry),
        conflicts=Counter("costctx_normalize_conflicts", "Old keys dropped because the canonical key carried a "
                          "different value (the canonical value is kept).", labels, registry=registry),
        coerced=Counter("costctx_normalize_coerced", "Values converted to the canonical type (e.g. a token count "
                        "sent as a string).", labels, registry=registry),
        uncoercible=Counter("costctx_normalize_uncoercible", "Values of the wrong type left as they are because "
                            "their meaning is unclear.", labels, registry=registry),
        values=Counter("costctx_normalize_values_renamed", "Renamed enum values rewritten (e.g. "
                       "gen_ai.provider.name vertex_ai -> gcp.vertex_ai).", labels, registry=registry),
    )

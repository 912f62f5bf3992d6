"""The normalize processor's counters, registered once per sidecar metrics registry."""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class NormalizeMetrics:
    renamed: Counter
    duplicates: Counter
    conflicts: Counter
    coerced: Counter
    uncoercible: Counter
    values: Counter


_BY_REGISTRY: WeakKeyDictionary[CollectorRegistry, NormalizeMetrics] = WeakKeyDictionary()


def normalize_metrics(registry: CollectorRegistry) -> NormalizeMetrics:
    """Shared by every normalize processor of one sidecar (a registry refuses duplicates)."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        labels = ["key", "where"]
        found = NormalizeMetrics(
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
        _BY_REGISTRY[registry] = found
    return found

"""The `normalize` processor's counters, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costctx.telemetry.metrics import ComponentMetrics


@dataclass(frozen=True)
class NormalizeMetrics:
    # each `.labels(key, where)`
    renamed: Any
    duplicates: Any
    conflicts: Any
    coerced: Any
    uncoercible: Any
    values: Any


def normalize_metrics(m: ComponentMetrics) -> NormalizeMetrics:
    labels = ["key", "where"]
    return NormalizeMetrics(
        renamed=m.counter("costctx_normalize_renamed", "Keys renamed to their canonical key, by canonical key and "
                          "place (span, event, resource).", labels),
        duplicates=m.counter("costctx_normalize_duplicates", "Old keys dropped because the canonical key carried "
                             "the same value.", labels),
        conflicts=m.counter("costctx_normalize_conflicts", "Old keys dropped because the canonical key carried a "
                            "different value (the canonical value is kept).", labels),
        coerced=m.counter("costctx_normalize_coerced", "Values converted to the canonical type (e.g. a token count "
                          "sent as a string).", labels),
        uncoercible=m.counter("costctx_normalize_uncoercible", "Values of the wrong type left as they are because "
                              "their meaning is unclear.", labels),
        values=m.counter("costctx_normalize_values_renamed", "Renamed enum values rewritten (e.g. "
                         "gen_ai.provider.name vertex_ai -> gcp.vertex_ai).", labels),
    )

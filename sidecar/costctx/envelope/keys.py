"""The span attributes the sidecar writes (envelope.yaml `written_fields`), named once for code.

tests/envelope/test_envelope_keys.py checks every name here against the contract's data file.
"""

from __future__ import annotations

COST_USD = "cost.usd"
COST_SOURCE = "cost.price_source"
COST_ORIGIN = "cost.origin"
SPEND_TOTAL = "workflow.spend_total_usd"
HOP_DEPTH_KEY = "workflow.hop_depth"
SCHEMA_KEY = "costctx.schema"
REPAIRED_KEY = "costctx.repaired"
RENAMED_KEY = "costctx.renamed"
MISSING_KEY = "costctx.missing"

WRITTEN_KEYS = (COST_USD, COST_SOURCE, COST_ORIGIN, SPEND_TOTAL, HOP_DEPTH_KEY, SCHEMA_KEY, REPAIRED_KEY,
                RENAMED_KEY, MISSING_KEY)

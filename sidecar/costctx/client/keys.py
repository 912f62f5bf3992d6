"""The envelope's context keys, for applications (no YAML, no sidecar import).

The same keys, in the same order, as `context_fields` of costctx/envelope/envelope.yaml;
tests/test_client_envelope.py checks they agree, so the contract stays one data file.
"""

from __future__ import annotations

ENVELOPE_KEYS: tuple[str, ...] = (
    "workflow.id", "workflow.name", "request.id", "retry.attempt", "owner.tenant", "owner.team",
    "owner.feature", "owner.user", "owner.cost_center", "owner.version", "policy.id",
)
INT_KEYS = frozenset({"retry.attempt"})
# Never inherited (ENVELOPE.md): not carried in baggage, not stamped on descendants.
NOT_INHERITED = frozenset({"retry.attempt"})

# Python-friendly names (the budget client's `make_envelope` arguments) -> canonical keys.
FIELD_KEYS: dict[str, str] = {
    "workflow_id": "workflow.id", "workflow_name": "workflow.name", "request_id": "request.id",
    "retry_attempt": "retry.attempt", "tenant": "owner.tenant", "team": "owner.team",
    "feature": "owner.feature", "user": "owner.user", "cost_center": "owner.cost_center",
    "version": "owner.version", "policy_id": "policy.id",
}


def canonical(fields: dict[str, object]) -> dict[str, str | int]:
    """`workflow_id=...` or `"workflow.id": ...` -> {"workflow.id": ...}; empty values dropped.

    Raises ValueError on a key that is not the envelope's (a typo would silently drop context)."""
    out: dict[str, str | int] = {}
    for name, value in fields.items():
        key = FIELD_KEYS.get(name, name)
        if key not in ENVELOPE_KEYS:
            raise ValueError(f"{name!r} is not an envelope field")
        if value is None or value == "":
            continue
        out[key] = int(value) if key in INT_KEYS else str(value)
    return out

"""The canonical fields of an Envelope message (costctx.v1.Envelope), for the registry."""

from __future__ import annotations

from typing import Any

VALID_TRACE_ID_BYTES = 16
VALID_SPAN_ID_BYTES = 8


def fields_of_envelope(envelope) -> dict[str, Any]:
    owner = envelope.owner
    pairs = (
        ("workflow.id", envelope.workflow_id), ("workflow.name", envelope.workflow_name),
        ("request.id", envelope.request_id), ("owner.tenant", owner.tenant), ("owner.team", owner.team),
        ("owner.feature", owner.feature), ("owner.user", owner.user), ("owner.cost_center", owner.cost_center),
        ("owner.version", owner.version), ("policy.id", envelope.policy_id),
    )
    # retry.attempt is never inherited (ENVELOPE.md), so it is not registered.
    return {key: value for key, value in pairs if value}


def valid_ids(trace_id: bytes, span_id: bytes) -> bool:
    return (len(trace_id) == VALID_TRACE_ID_BYTES and len(span_id) == VALID_SPAN_ID_BYTES
            and any(trace_id) and any(span_id))


def register_check(registry, request) -> bool:
    """A budget check that carries the caller's trace and span id registers its envelope for
    them (and for the trace), so the model-call span that follows is repaired at once."""
    if registry is None or not valid_ids(request.trace_id, request.span_id):
        return False
    fields = fields_of_envelope(request.envelope)
    if "workflow.id" not in fields:
        return False
    registry.learn(request.trace_id, request.span_id, fields)
    return True

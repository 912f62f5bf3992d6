"""What the budget accepts as an id: reservation ids and the envelope ids that name counters.

Ids end up in Redis keys and in reservation hash fields; a control character there (a `\n`
splits a reservation's stored field) or an unbounded length has no business in them, so the
API refuses them (INVALID_ARGUMENT / 400) rather than storing something it cannot release.
"""

from __future__ import annotations

import re

from costctx.budget.store import RESERVATION_TAG_SEPARATOR

MAX_RESERVATION_ID = 64
MAX_ENVELOPE_ID = 256

# The sidecar issues uuid4 hex ids; accept the URL-safe alphabet so other issuers fit too.
_RESERVATION_ID = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_RESERVATION_ID}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def valid_reservation_id(value: str) -> bool:
    """The sidecar's uuid hex; on a Redis Cluster followed by `~<tenant>` (the slot it lives in)."""
    rid, separator, tenant = value.partition(RESERVATION_TAG_SEPARATOR)
    if _RESERVATION_ID.fullmatch(rid) is None:
        return False
    return not separator or (bool(tenant) and envelope_id_problem("tenant", tenant) is None)


def envelope_id_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be an envelope id (workflow.id, owner.tenant, ...), or None."""
    if len(value) > MAX_ENVELOPE_ID:
        return f"{name} is longer than {MAX_ENVELOPE_ID} characters"
    if _CONTROL.search(value):
        return f"{name} contains a control character"
    return None

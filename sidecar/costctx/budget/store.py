"""What a budget backend takes and returns (the memory and Redis stores share it)."""

from __future__ import annotations

from dataclasses import dataclass, field

# A change whose field starts with this is set only when absent (e.g. a workflow's start).
SET_IF_ABSENT = "="


@dataclass(slots=True)
class CommitOp:
    """One priced span: release its reservation, add its actual amounts."""

    reservation_id: str | None
    # (key, field, amount, key ttl ms); the result lists each field's value afterwards
    changes: list[tuple[str, str, int, int]] = field(default_factory=list)
    # A span committed once across every sidecar: the shared store sets this key (relative,
    # e.g. "c|<trace id><span id>") with SET NX and adds nothing when it already exists.
    once_key: str | None = None
    once_ttl_ms: int = 0


@dataclass(slots=True)
class CommitResult:
    released: bool        # the reservation was still live and is now replaced
    values: list[int]     # each change's field value after the change
    duplicate: bool = False  # already committed (by another sidecar, or a resend): nothing added


class StoreUnavailable(Exception):
    """The shared store could not be reached; policies say fail open or closed."""

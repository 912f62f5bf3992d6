"""What a budget backend takes and returns (the memory and Redis stores share it)."""

from __future__ import annotations

from dataclasses import dataclass, field

# A change whose field starts with this is set only when absent (e.g. a workflow's start).
SET_IF_ABSENT = "="
# On a Redis Cluster a reservation id ends with this and its tenant (the slot it lives in).
RESERVATION_TAG_SEPARATOR = "~"


def reservation_tag(reservation_id: str | None) -> str | None:
    """The tenant a cluster reservation id names, None for an id without one."""
    if not reservation_id or RESERVATION_TAG_SEPARATOR not in reservation_id:
        return None
    return reservation_id.split(RESERVATION_TAG_SEPARATOR, 1)[1]


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
    # The hash tag a Redis Cluster places every key of this commit under: the tenant.
    tag: str = ""
    # The span's workflow and tenant: the reservation is replaced only when they match the ones
    # its check named (Binding.admits). None: not checked (an explicit Release by the id's holder).
    binding: tuple[str, str] | None = None


@dataclass(slots=True)
class CommitResult:
    released: bool        # the reservation was still live and is now replaced
    values: list[int]     # each change's field value after the change
    duplicate: bool = False  # already committed (by another sidecar, or a resend): nothing added
    refused: bool = False  # the reservation was made for another workflow or tenant: left alone


@dataclass(slots=True)
class KeyAdds:
    """What one batch adds to one counter key: its spans' amounts summed per field."""

    ttl_ms: int
    sums: dict[str, int] = field(default_factory=dict)       # field -> amount added
    if_absent: dict[str, int] = field(default_factory=dict)  # field -> set when absent (the first span's)


def binding_admits(bound: tuple[str, str], span: tuple[str, str]) -> bool:
    """May a span of (workflow, tenant) `span` replace a reservation bound to `bound`? Each
    field the check named must match; one it left empty binds nothing (as release.lua)."""
    return all(not mine or mine == theirs for mine, theirs in zip(bound, span, strict=True))


class StoreUnavailable(Exception):
    """The shared store could not be reached; policies say fail open or closed."""

"""The admission kernel, shared in meaning by both backends.

A check is a list of dimensions (a counter field with its limits and this call's
amounts). The memory backend runs `decide` below; the Redis backend runs the same rules
in `lua/check.lua`, atomically with the reservation. Tests run the same cases on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALLOW, DEGRADE, BLOCK, TRIPPED = "allow", "degrade", "block", "tripped"


@dataclass(slots=True)
class Dim:
    name: str          # e.g. workflow.cost_usd, tenant.day_usd
    unit: str          # usd, tokens, steps, seconds
    key: str           # counter key (relative)
    field: str         # counter field (usd, tok, steps) or `start` for wall-clock
    limit: int         # the configured limit, in counter units
    hard: int          # limit x hard threshold
    soft: int          # limit x soft threshold
    full: int = 0      # this call's amount with the requested model
    degraded: int = 0  # this call's amount with the cheaper model
    ttl_ms: int = 0    # the counter is forgotten after this long untouched
    elapsed: bool = False  # wall-clock: the value is now - start, nothing is reserved
    scale: float = 1.0     # counter units per displayed unit (1e6 for usd, 1e3 for seconds)


@dataclass(slots=True)
class CheckPlan:
    dims: list[Dim]
    breaker_keys: list[str] = field(default_factory=list)
    reserve: bool = True
    has_degraded: bool = False
    reservation_id: str = ""
    reservation_ttl_ms: int = 30_000
    # The hash tag a Redis Cluster places every key of this check under: the tenant.
    tag: str = ""
    # The workflow and tenant the reservation is made for: only their spans may replace it.
    binding: tuple[str, str] = ("", "")


@dataclass(slots=True)
class CheckOutcome:
    verdict: str                    # allow, degrade, block, tripped
    degraded: bool                  # the cheaper model's amounts were reserved
    values: list[tuple[int, int]]   # per dim before this call: (committed, reserved); wall-clock: (elapsed ms, 0)
    reserved: bool


def fits(dims: list[Dim], values: list[tuple[int, int]], degraded: bool) -> int:
    """-1 when every dimension takes this call under its hard limit, else the first that does not."""
    for i, (dim, (committed, reserved)) in enumerate(zip(dims, values, strict=True)):
        if dim.elapsed:
            if committed > dim.hard:
                return i
            continue
        used = committed + reserved
        amount = dim.degraded if degraded else dim.full
        # At the limit nothing more passes, not even a zero estimate.
        if used >= dim.hard or used + amount > dim.hard:
            return i
    return -1


def soft_reached(dims: list[Dim], values: list[tuple[int, int]]) -> bool:
    for dim, (committed, reserved) in zip(dims, values, strict=True):
        used = committed if dim.elapsed else committed + reserved + dim.full
        if used >= dim.soft:
            return True
    return False


def decide(dims: list[Dim], values: list[tuple[int, int]], has_degraded: bool, tripped: bool) -> tuple[str, bool]:
    """-> (verdict, reserve the degraded amounts)."""
    if tripped:
        return TRIPPED, False
    if not soft_reached(dims, values):
        return (ALLOW, False) if fits(dims, values, False) < 0 else (BLOCK, False)
    if has_degraded and fits(dims, values, True) < 0:
        return DEGRADE, True
    if fits(dims, values, False) < 0:
        return ALLOW, False  # soft, but no cheaper model is configured for this one
    return BLOCK, False

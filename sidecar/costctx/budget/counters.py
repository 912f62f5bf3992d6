"""Counter keys and units: what the check reads and the priced spans write, by one name.

Money is integer micro-USD everywhere in the counters (Redis HINCRBY is integer), so
admission compares exact sums, never floats. Keys are relative; a backend adds its prefix.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

MICRO = 1_000_000

# Fields of a counter hash: committed value and the part held by live reservations.
USD, USD_RSV = "usd", "usd_r"
TOKENS, TOKENS_RSV = "tok", "tok_r"
STEPS, STEPS_RSV = "steps", "steps_r"
# Calls in flight: only ever reserved (one per admitted call) and released at commit, so its
# committed part stays 0 and the reserved part is the number of calls in flight.
IN_FLIGHT, IN_FLIGHT_RSV = "fl", "fl_r"
START = "start"  # the workflow's first-seen time, epoch ms (set once)

RESERVED_FIELD = {USD: USD_RSV, TOKENS: TOKENS_RSV, STEPS: STEPS_RSV, IN_FLIGHT: IN_FLIGHT_RSV}

# The in-process store keeps a counter as a list of its fields' values in these places (None:
# absent, as a Redis hash's missing field), as long as its last field present: a workflow's
# committed counter is 4 places, a window's 1. A list of 1-4 places is 64-88 bytes where a
# dict of the same fields took 184 (budget/memory.py).
FIELDS = (USD, TOKENS, STEPS, START, USD_RSV, TOKENS_RSV, STEPS_RSV, IN_FLIGHT, IN_FLIGHT_RSV)
SLOT = {name: place for place, name in enumerate(FIELDS)}

WINDOWS = {"hour": "%Y%m%d%H", "day": "%Y%m%d", "month": "%Y%m"}
# Window counters outlive their window a little, so late spans still land.
WINDOW_TTL_S = {"hour": 2 * 3600, "day": 2 * 86400, "month": 32 * 86400}


# Far above any real call; keeps micro-USD and token sums inside Redis's 64-bit integers.
# The check refuses estimates above them; a span's actual amounts are counted at most these.
MAX_USD = 1e9
MAX_TOKENS = 10**12


def usd_to_micro(usd: float, round_up: bool = False) -> int:
    """Estimates round up (never under-reserve); actual costs round to nearest."""
    if usd <= 0 or math.isnan(usd) or math.isinf(usd):
        return 0
    scaled = usd * MICRO
    return math.ceil(scaled - 1e-6) if round_up else round(scaled)


def spent_micro(usd: float) -> int:
    """A span's actual cost in micro-USD. An infinite or absurd cost is counted at MAX_USD (over
    any limit; never as 0, and never past what Redis's HINCRBY takes); NaN or <= 0 is 0."""
    if math.isnan(usd) or usd <= 0:
        return 0
    return usd_to_micro(min(usd, MAX_USD))


def spent_tokens(tokens: int) -> int:
    return min(max(tokens, 0), MAX_TOKENS)


def micro_to_usd(micro: int) -> float:
    return micro / MICRO


def _part(value: str) -> str:
    # Keep the `|` separator unambiguous whatever a tenant or workflow id contains, and keep
    # newlines out of keys (a reservation stores "<key>\n<field>").
    return value.replace("%", "%25").replace("|", "%7C").replace("\n", "%0A")


def workflow_key(workflow_id: str) -> str:
    return f"wf|{_part(workflow_id)}"


@lru_cache(maxsize=256)
def _stamps(hour: int) -> dict[str, str]:
    # Every window is a whole number of UTC hours: format once per hour, not per span.
    at = time.gmtime(hour * 3600)
    return {window: time.strftime(fmt, at) for window, fmt in WINDOWS.items()}


def window_key(kind: str, owner: str, window: str, at: float) -> str:
    """kind 't' (tenant) or 'f' (feature); window hour/day/month in UTC at epoch `at`."""
    return f"{kind}|{_part(owner)}|{window[0]}|{_stamps(int(at // 3600))[window]}"


@lru_cache(maxsize=4096)
def window_keys(kind: str, owner: str, hour: int) -> tuple[str, ...]:
    """window_key of every window (in WINDOWS order) at UTC hour `hour` (int(epoch s // 3600)).
    Cached: the spans of one tenant or feature within an hour all name the same keys."""
    part = _part(owner)
    stamps = _stamps(hour)
    return tuple(f"{kind}|{part}|{window[0]}|{stamps[window]}" for window in WINDOWS)


def velocity_key(tenant: str, bucket: int) -> str:
    return f"v|{_part(tenant)}|{bucket}"


def tenant_breaker_key(tenant: str) -> str:
    return f"brk|t|{_part(tenant)}"


def workflow_breaker_key(workflow_id: str) -> str:
    return f"brk|w|{_part(workflow_id)}"

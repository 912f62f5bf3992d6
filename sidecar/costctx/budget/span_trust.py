"""What the budget believes of a model-call span before its spend is committed.

A span is data from whoever can reach the sidecar's port; see "Trust model" in the README.
Each rule here bounds what a wrong or hostile span can do to the counters:
- its own timestamps pick no window: the commit lands in the window of the sidecar's clock,
  moved by the span's time at most `max_span_clock_skew` (a span stamped days away cannot
  spend outside today's tenant ceiling);
- a cost above `max_call_usd` is not believed: it is recomputed from the span's tokens at the
  price book's rates (at most the cap), and counted;
- a `budget.reservation_id` that no sidecar could have issued names no reservation;
- a resend is recognised by trace id + span id + a digest of the cost inputs, so a span that
  squats another's ids with other amounts is counted as itself and cannot hide the real one.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable

from costctx.budget.counters import MAX_TOKENS, usd_to_micro
from costctx.budget.ids import valid_reservation_id
from costctx.budget.policy import SpanSpend
from costctx.pdata.codec.api import SpanView
from costctx.pdata.ids import span_identity

log = logging.getLogger("costctx.budget")

INPUT, OUTPUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
RESPONSE_MODEL, REQUEST_MODEL = "gen_ai.response.model", "gen_ai.request.model"

CLOCK_SKEW, COST_CAPPED, BAD_RESERVATION_ID = "clock_skew", "cost_capped", "bad_reservation_id"


class SpanTrust:
    def __init__(self, max_call_usd: float, max_clock_skew: float,
                 price_micro: Callable[[str, int, int], int | None],
                 count: Callable[[str, int], None]) -> None:
        self.cap_micro = usd_to_micro(max_call_usd)
        self.max_clock_skew = max_clock_skew
        self._price_micro = price_micro  # (model, input, output) -> micro-USD, None when unpriced
        self._count = count              # (reason, spans)

    def vet(self, span: SpanView, spend: SpanSpend, now: float) -> SpanSpend:
        """Bound what `spend` (read from `span`) may do; mutates and returns it."""
        skew = self.max_clock_skew
        if not now - skew <= spend.at <= now + skew:
            spend.at = min(max(spend.at, now - skew), now + skew)
            self._count(CLOCK_SKEW, 1)
        # The workflow's first-seen time (wall-clock limits): within an hour before the commit.
        at_ms = int(spend.at * 1000)
        spend.start_ms = min(max(spend.start_ms, at_ms - 3_600_000), at_ms)
        rid = spend.reservation_id
        if rid is not None and not valid_reservation_id(rid):
            spend.reservation_id = None
            self._count(BAD_RESERVATION_ID, 1)
        if spend.cost_micro > self.cap_micro:
            spend.cost_micro = self._recomputed(span, spend.cost_micro)
            self._count(COST_CAPPED, 1)
        return spend

    def _recomputed(self, span: SpanView, reported: int) -> int:
        values = span.attrs
        model = _text(values.get(RESPONSE_MODEL)) or _text(values.get(REQUEST_MODEL))
        tokens = [min(max(_count(values.get(key)), 0), MAX_TOKENS) for key in (INPUT, OUTPUT)]
        priced = self._price_micro(model, tokens[0], tokens[1]) if model else None
        cost = self.cap_micro if priced is None else min(priced, self.cap_micro)
        log.warning("span reported $%.6f for one call (over max_call_usd $%.2f); committed $%.6f (%s)",
                    reported / 1e6, self.cap_micro / 1e6, cost / 1e6,
                    "from its tokens" if priced is not None else "the cap: no price for its tokens")
        return cost


def _text(value: object) -> str:
    return value if type(value) is str else ""


def _count(value: object) -> int:
    return value if type(value) is int else 0


def resend_key(span: SpanView, spend: SpanSpend) -> bytes | None:
    """The span's identity plus a digest of what it commits: a resent batch repeats both; a
    span squatting another's ids with other amounts does not."""
    identity = span_identity(span)
    if identity is None:
        return None
    return resend_digest(identity, spend.cost_micro, spend.tokens, spend.reservation_id)


def resend_digest(identity: bytes, cost_micro: int, tokens: int, reservation_id: str | None) -> bytes:
    """resend_key from the span's identity and amounts."""
    # The amounts the span carries, not the context repair gave it: a resent copy repaired
    # differently (its ancestor arrived between the two sends) is still the same call, and
    # must not be committed twice under two owners.
    digest = hashlib.blake2b(digest_size=8)
    digest.update(struct.pack("<qq", cost_micro, tokens))
    digest.update((reservation_id or "").encode("utf-8", "surrogatepass"))
    return identity + digest.digest()

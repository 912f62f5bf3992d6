"""Exact money: amounts are integers of pico-USD (10^-12 dollars).

Why pico-USD and not micro or nano: the smallest published per-token rates are fractions
of a nano-dollar per token ($0.0375 per million tokens = 37.5 nano-USD per token), but
every list price quoted per million tokens with up to six decimals is a whole number of
pico-dollars per token. So `tokens * rate` is an exact integer with no rounding anywhere,
a workflow's total is the exact sum of its spans, and Python ints never overflow. The
only conversion to float happens when an attribute is written (`to_usd_float`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

PICO_PER_USD = 10**12
_PER_MILLION_TO_PICO_PER_TOKEN = Decimal(10**6)  # $/M tokens * 1e12 / 1e6
_PER_TOKEN_TO_PICO = Decimal(PICO_PER_USD)


def _decimal(value: object) -> Decimal:
    # repr() of a float is its shortest round-trip text: 2.5e-06 -> Decimal('0.0000025').
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"not a number: {value!r}")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"a price must be a finite number >= 0, got {value!r}")
    return number


def _to_int(amount: Decimal) -> int:
    # to_integral_value, not quantize(Decimal(1)): the same rounding, but quantize raises
    # InvalidOperation once the integer has more digits than the context's precision (28),
    # e.g. a reported cost of 1e300 from a client.
    return int(amount.to_integral_value(rounding=ROUND_HALF_EVEN))


def rate_from_per_million(value: object) -> int:
    """USD per million tokens -> pico-USD per token (exact for up to 6 decimals)."""
    return _to_int(_decimal(value) * _PER_MILLION_TO_PICO_PER_TOKEN)


def rate_from_per_token(value: object) -> int:
    """USD per token (LiteLLM's unit) -> pico-USD per token."""
    return _to_int(_decimal(value) * _PER_TOKEN_TO_PICO)


def from_usd(value: object) -> int:
    """A USD amount (e.g. a provider-reported cost double) -> pico-USD."""
    if type(value) is float and 0.0 <= value < 1e15:
        # The common reported cost: its repr is `whole.fraction` (no exponent in this range but
        # below 1e-4), and with at most 12 fraction digits the Decimal product is the integer
        # those digits spell, so no Decimal is needed (~4x cheaper, once per reported span).
        whole, dot, fraction = repr(value).partition(".")
        if dot and len(fraction) <= 12 and fraction.isdigit():
            return int(whole) * PICO_PER_USD + int(fraction) * 10 ** (12 - len(fraction))
    return _to_int(_decimal(value) * _PER_TOKEN_TO_PICO)


def to_usd_float(pico: int) -> float:
    """The attribute value: int / int true division is correctly rounded to the nearest double."""
    try:
        return pico / PICO_PER_USD
    except OverflowError:  # past the largest double (sums of absurd reported costs): saturate
        return math.inf


def to_usd_decimal(pico: int) -> Decimal:
    return (Decimal(pico) / PICO_PER_USD).normalize()


def format_usd(pico: int) -> str:
    """Exact text for people: '$0.0125', never float noise."""
    text = format(to_usd_decimal(pico), "f")
    return f"${text}"


def format_rate(pico_per_token: int) -> str:
    """A rate as USD per million tokens, exact: '$2.5/M'."""
    per_million = (Decimal(pico_per_token) / _PER_MILLION_TO_PICO_PER_TOKEN).normalize()
    return f"${format(per_million, 'f')}/M"

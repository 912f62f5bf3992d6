"""from_usd's shortcut for doubles (digits of the repr, no Decimal) gives exactly what the
Decimal conversion gives, for every finite non-negative double, and the same errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.pricing.money import _PER_TOKEN_TO_PICO, _decimal, _to_int, from_usd


def _by_decimal(value: float) -> int:
    return _to_int(_decimal(value) * _PER_TOKEN_TO_PICO)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
                 st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
                 st.integers(0, 10**15).map(lambda n: n / 10**12)))
def test_from_usd_of_a_double_is_the_decimal_conversion(value):
    assert from_usd(value) == _by_decimal(value)


@pytest.mark.parametrize("value", [0.0, -0.0, 1e-4, 9.99e-5, 0.0125, 0.1 + 0.2, 1e15, 1e15 - 0.125, 5e-324,
                                   123.456789012345, 2.5e-06])
def test_edges_of_the_shortcut(value):
    assert from_usd(value) == _by_decimal(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_what_the_decimal_conversion_refuses_is_refused(value):
    with pytest.raises(ValueError):
        from_usd(value)

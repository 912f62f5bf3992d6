"""Coerce an attribute value to its canonical type where the meaning is clear.

A token count sent as "120" or 120.0 is 120; 120.5 or "many" is not a count, so it is
left alone and counted. Numbers never become booleans and booleans never numbers.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING, Any

from costctx.pdata.attributes import set_any_value

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# The AnyValue field that holds each canonical type.
TYPE_FIELD = {"string": "string_value", "int": "int_value", "double": "double_value", "bool": "bool_value"}


class Coercion(Enum):
    OK = "ok"  # already the canonical type (or a type this module does not check)
    COERCED = "coerced"
    UNCOERCIBLE = "uncoercible"


_NOT = object()


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64(number: int) -> Any:
    return number if INT64_MIN <= number <= INT64_MAX else _NOT


def _to_int(kind: str, value: AnyValue) -> Any:
    if kind == "double_value":
        number = value.double_value
        return _int64(int(number)) if math.isfinite(number) and number.is_integer() else _NOT
    if kind == "string_value":
        text = value.string_value.strip()
        try:
            return _int64(int(text))
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return _NOT
        return _int64(int(number)) if math.isfinite(number) and number.is_integer() else _NOT
    return _NOT


def _to_double(kind: str, value: AnyValue) -> Any:
    if kind == "int_value":
        return float(value.int_value)
    if kind == "string_value":
        try:
            number = float(value.string_value.strip())
        except ValueError:
            return _NOT
        return number if math.isfinite(number) else _NOT
    return _NOT


def _to_string(kind: str, value: AnyValue) -> Any:
    # An id sent as a number ("tenant 42") is clear; a double or a bool as a string is not.
    return str(value.int_value) if kind == "int_value" else _NOT


_CONVERTERS = {"int": _to_int, "double": _to_double, "string": _to_string}


def converted(value: AnyValue, type_name: str | None) -> tuple[Coercion, Any]:
    """(outcome, the Python value in the canonical type) without changing `value`.

    For OK the Python value is the stored one; for UNCOERCIBLE it is None.
    """
    kind = value.WhichOneof("value")
    wanted = TYPE_FIELD.get(type_name or "")
    if wanted is None or kind is None or kind == wanted:
        return Coercion.OK, getattr(value, kind) if kind and kind not in ("array_value", "kvlist_value") else value
    result = _CONVERTERS.get(type_name, lambda k, v: _NOT)(kind, value)
    if result is _NOT:
        return Coercion.UNCOERCIBLE, None
    return Coercion.COERCED, result


def coerce_in_place(value: AnyValue, type_name: str | None) -> Coercion:
    outcome, result = converted(value, type_name)
    if outcome is Coercion.COERCED:
        set_any_value(value, result)
    return outcome


def same_fact(a: AnyValue, b: AnyValue, type_name: str | None) -> bool:
    """Whether two values say the same thing once both are in the canonical type."""
    if a == b:
        return True
    outcome_a, value_a = converted(a, type_name)
    outcome_b, value_b = converted(b, type_name)
    if Coercion.UNCOERCIBLE in (outcome_a, outcome_b):
        return False
    return type(value_a) is type(value_b) and value_a == value_b

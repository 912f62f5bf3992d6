"""Append attributes to a span as pre-encoded protobuf bytes: one C call for many fields.

Repair writes the same few (key, value) pairs on many spans: the parent's context on each
of its children, and the same `costctx.repaired` list on most repaired spans. Adding them
one KeyValue at a time (add, set key, set value, for every array element too) was most of
the repair's cost (bench/profile_stage.py). A repeated field's encoded elements can simply
be concatenated, and `MergeFromString` appends them to the span's `attributes` in C; the
result is the same message as adding them one by one.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from costctx.pdata.attributes import set_any_value

# Span.attributes: field number 9, wire type 2 (length-delimited) -> tag byte 0x4a.
_ATTRIBUTES_TAG = bytes([(Span.DESCRIPTOR.fields_by_name["attributes"].number << 3) | 2])
assert len(_ATTRIBUTES_TAG) == 1


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def attribute_bytes(key: str, value: Any) -> bytes:
    """One element of Span.attributes, encoded as it appears inside a serialized Span."""
    kv = KeyValue(key=key)
    set_any_value(kv.value, value)
    body = kv.SerializeToString()
    return _ATTRIBUTES_TAG + _varint(len(body)) + body


class AttributeBytes:
    """(key, value) -> encoded attribute, for string values; bounded by clearing when full
    (the values that repeat, tenants, teams, a trace's workflow id, come straight back)."""

    def __init__(self, max_entries: int = 8192) -> None:
        self._pieces: dict[tuple[str, str], bytes] = {}
        self._max_entries = max_entries

    def get(self, key: str, value: str) -> bytes:
        pieces = self._pieces
        piece = pieces.get((key, value))
        if piece is None:
            if len(pieces) >= self._max_entries:
                pieces.clear()
            piece = pieces[(key, value)] = attribute_bytes(key, value)
        return piece

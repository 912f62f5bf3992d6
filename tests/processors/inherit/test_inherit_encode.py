"""Attributes appended as pre-encoded bytes (sidecar/costctx/processors/inherit/encode.py) give the same span
as adding them one KeyValue at a time, whatever the value type and the span's content."""

from __future__ import annotations

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from costctx.pdata.attributes import set_any_value
from costctx.processors.inherit.encode import AttributeBytes, attribute_bytes

VALUES = ["wf-1", "", "ünïcödé " * 40, 0, 7, -3, 2**40, True, 1.5, b"\x00\xff", ["a", "b"], [1, "x"], [],
          {"k": "v", "n": 2}]


def _span() -> Span:
    span = Span(name="s", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    kv = span.attributes.add()
    kv.key, kv.value.string_value = "existing", "value"
    return span


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_one_attribute_as_bytes_equals_adding_it(value) -> None:
    expected, merged = _span(), _span()
    kv = expected.attributes.add()
    kv.key = "costctx.field"
    set_any_value(kv.value, value)
    merged.MergeFromString(attribute_bytes("costctx.field", value))
    assert merged == expected
    assert merged.SerializeToString() == expected.SerializeToString()


def test_many_attributes_in_one_call_keep_their_order() -> None:
    expected, merged = _span(), _span()
    pairs = [(f"k{i}", value) for i, value in enumerate(VALUES)]
    for key, value in pairs:
        kv = expected.attributes.add()
        kv.key = key
        set_any_value(kv.value, value)
    merged.MergeFromString(b"".join(attribute_bytes(key, value) for key, value in pairs))
    assert [kv.key for kv in merged.attributes] == ["existing"] + [key for key, _ in pairs]
    assert merged.SerializeToString() == expected.SerializeToString()


def test_memo_returns_the_encoding_and_stays_bounded() -> None:
    memo = AttributeBytes(max_entries=3)
    for i in range(10):
        assert memo.get("owner.tenant", f"t{i}") == attribute_bytes("owner.tenant", f"t{i}")
        assert len(memo._pieces) <= 3

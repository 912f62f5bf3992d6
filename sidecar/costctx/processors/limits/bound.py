"""Truncate long values anywhere a span carries text or bytes: attribute values (inside arrays
and kvlists too, at any depth), the span's name, its events' names and attributes, its links'
attributes, and the resource's attributes. Each function returns how many values it cut."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import Span



def truncate_value(value: AnyValue, limit: int) -> int:
    """Iterative, so a deeply nested kvlist cannot exhaust the stack."""
    cut = 0
    stack = [value]
    while stack:
        current = stack.pop()
        kind = current.WhichOneof("value")
        if kind == "string_value":
            if len(current.string_value) > limit:
                current.string_value = current.string_value[:limit]
                cut += 1
        elif kind == "bytes_value":
            if len(current.bytes_value) > limit:
                current.bytes_value = current.bytes_value[:limit]
                cut += 1
        elif kind == "array_value":
            stack.extend(current.array_value.values)
        elif kind == "kvlist_value":
            stack.extend(kv.value for kv in current.kvlist_value.values)
    return cut


def truncate_attributes(attributes: Iterable[KeyValue], limit: int) -> int:
    return sum(truncate_value(kv.value, limit) for kv in attributes)


def _truncate_name(holder, limit: int) -> int:
    if len(holder.name) > limit:
        holder.name = holder.name[:limit]
        return 1
    return 0


def bound_span(span: Span, limit: int) -> int:
    cut = truncate_attributes(span.attributes, limit) + _truncate_name(span, limit)
    for event in span.events:
        cut += _truncate_name(event, limit) + truncate_attributes(event.attributes, limit)
    for link in span.links:
        cut += truncate_attributes(link.attributes, limit)
    return cut


def bound_resource(resource: Resource, limit: int) -> int:
    return truncate_attributes(resource.attributes, limit)

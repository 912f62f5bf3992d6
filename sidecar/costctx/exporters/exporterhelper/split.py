"""Split an OTLP export request into smaller ones: to a configured maximum before sending (the
Collector's exporter batcher, `sending_queue.batch.max_size`), and in halves when the downstream
refuses a request as too large. Without it an acknowledged batch larger than what the downstream
takes was dropped whole.

A request is cut between its leaves (spans, log records, metric data points); every piece keeps
the resource, scope and metric its leaves came under, so each is a complete request on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from costctx.exporters.exporterhelper.config import BatchConfig
from costctx.pdata.signals import LOGS, METRICS, TRACES, Signal

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = ["BatchConfig", "halves", "split_to_max"]


# signal -> (resource list, scope list, leaf list) field names
_LEVELS = {
    TRACES: ("resource_spans", "scope_spans", "spans"),
    LOGS: ("resource_logs", "scope_logs", "log_records"),
    METRICS: ("resource_metrics", "scope_metrics", "metrics"),
}


def _shell(message: Message, without: str) -> Message:
    """A copy of `message` with every field but `without` (its list of children)."""
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer, RepeatedScalarFieldContainer

    copy = type(message)()
    for field, value in message.ListFields():
        if field.name == without:
            continue
        if isinstance(value, RepeatedCompositeFieldContainer | RepeatedScalarFieldContainer):
            getattr(copy, field.name).extend(value)
        elif field.message_type is not None:
            getattr(copy, field.name).CopyFrom(value)
        else:
            setattr(copy, field.name, value)
    return copy


def _leaves(signal: Signal, request: Message) -> Iterator[tuple[int, int, int, int]]:
    """(resource, scope, leaf, data point or -1) of every item, in order."""
    resources, scopes, leaves = _LEVELS[signal]
    for r, resource in enumerate(getattr(request, resources)):
        for s, scope in enumerate(getattr(resource, scopes)):
            for i, leaf in enumerate(getattr(scope, leaves)):
                if signal is METRICS:
                    kind = leaf.WhichOneof("data")
                    points = len(getattr(leaf, kind).data_points) if kind is not None else 0
                    if points == 0:
                        yield r, s, i, -1  # a metric without points still travels
                    for p in range(points):
                        yield r, s, i, p
                else:
                    yield r, s, i, -1


def _build(signal: Signal, request: Message, picks: list[tuple[int, int, int, int]]) -> Message:
    """A request holding only the picked leaves, under copies of their resources and scopes."""
    resources, scopes, leaves = _LEVELS[signal]
    out = type(request)()
    last_r = last_s = last_i = None
    out_resource = out_scope = out_leaf = None
    for r, s, i, p in picks:
        resource = getattr(request, resources)[r]
        if r != last_r:
            out_resource = getattr(out, resources).add()
            out_resource.CopyFrom(_shell(resource, scopes))
            last_r, last_s, last_i = r, None, None
        scope = getattr(resource, scopes)[s]
        if s != last_s:
            out_scope = getattr(out_resource, scopes).add()
            out_scope.CopyFrom(_shell(scope, leaves))
            last_s, last_i = s, None
        leaf = getattr(scope, leaves)[i]
        if p < 0:
            getattr(out_scope, leaves).add().CopyFrom(leaf)
            last_i = i
            continue
        kind = leaf.WhichOneof("data")
        if i != last_i:
            out_leaf = getattr(out_scope, leaves).add()
            out_leaf.CopyFrom(leaf)
            getattr(out_leaf, kind).ClearField("data_points")
            last_i = i
        getattr(out_leaf, kind).data_points.add().CopyFrom(getattr(leaf, kind).data_points[p])
    return out


def _count(signal: Signal, part: list[tuple[int, int, int, int]]) -> int:
    # As count_items: metrics count data points (a metric without any counts none).
    return sum(1 for pick in part if pick[3] >= 0) if signal is METRICS else len(part)


def halves(signal: Signal, payload: bytes) -> list[tuple[bytes, int]] | None:
    """The request cut in two by items, or None when it holds one item (it cannot be split)."""
    request = signal.request_type.FromString(payload)
    picks = list(_leaves(signal, request))
    if len(picks) < 2:
        return None
    middle = len(picks) // 2
    return [(_build(signal, request, part).SerializeToString(), _count(signal, part))
            for part in (picks[:middle], picks[middle:])]


def split_to_max(signal: Signal, payload: bytes, items: int, max_items: int | None,
                 max_bytes: int | None) -> list[tuple[bytes, int]]:
    """Pieces of at most `max_items` items and `max_bytes` bytes each (a single item larger than
    `max_bytes` stays a piece of its own: the downstream decides). One parse, pieces in order."""
    if (max_items is None or items <= max_items) and (max_bytes is None or len(payload) <= max_bytes):
        return [(payload, items)]
    request = signal.request_type.FromString(payload)
    picks = list(_leaves(signal, request))
    pieces: list[tuple[bytes, int]] = []
    stack = [picks]
    while stack:
        part = stack.pop()
        if max_items is not None and len(part) > max_items:
            stack += [part[max_items:], part[:max_items]]  # popped first: order is kept
            continue
        body = _build(signal, request, part).SerializeToString()
        if max_bytes is not None and len(body) > max_bytes and len(part) > 1:
            middle = len(part) // 2
            stack += [part[middle:], part[:middle]]
            continue
        pieces.append((body, _count(signal, part)))
    return pieces

"""limits: bound what one span may carry, so one misbehaving client cannot blow up the sidecar
or the backend: at most `max_attributes_per_span` attributes, string and bytes values at most
`max_attribute_value_length` characters/bytes wherever a span carries them: attribute values
(in arrays and kvlists too), the span name, events (name and attributes), links' attributes
and the resource's attributes (limits/bound.py).

The excess is not refused (the rest of the span is still worth having for attribution) but
truncated or dropped, and counted: `costctx_limits_dropped_attributes_total`,
`costctx_limits_truncated_values_total`, and the span's own OTLP `dropped_attributes_count`.
Envelope attributes (the cost context, usage, `costctx.*`) are kept first when attributes
must be dropped; the others keep their order and the last ones go. Request size is bounded by
the receivers (`max_recv_msg_size_mib`, `max_request_body_size`).

On the batch view, cheap when nothing is over: the attribute count is the view's
`attr_count`, and a span (or resource) whose encoded `size` is below the value limit cannot
hold a long value; both are read as columns (`span_column`) and checked against the batch's
largest first, so a batch under every limit costs no Python per span. Values earlier
processors set are checked as edits. Only a span over a limit is materialised, bounded by
bound.py and put back whole (`replace`); a resource over the value limit sends the batch
down the protobuf path (resources that large are rare).
"""

from __future__ import annotations

from typing import Any

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.pdata import TraceBatch
from costctx.pdata.attributes import index_attributes
from costctx.pdata.codec.api import KvList, SpanEdits, span_column
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.limits.bound import bound_resource, bound_span
from costctx.processors.limits.config import LimitsConfig
from costctx.processors.limits.metrics import limits_metrics


def _longest(value: Any) -> int:
    """The longest string or bytes in a decoded value (arrays and kvlists searched), iteratively."""
    kind = type(value)
    if kind is str or kind is bytes:  # the usual values, and a list of strings (a stamp)
        return len(value)
    if kind is list and all(type(item) is str for item in value):
        return max(map(len, value), default=0)
    longest = 0
    stack = [value]
    while stack:
        current = stack.pop()
        kind = type(current)
        if kind is str or kind is bytes:
            longest = max(longest, len(current))
        elif isinstance(current, KvList):
            stack.extend(item for _, item in current)
        elif isinstance(current, (list, tuple)):
            stack.extend(current)
    return longest


def _edits_over(edits: SpanEdits | None, max_len: int) -> bool:
    """Whether values an earlier processor set (not yet in the scanned size) may be over the limit."""
    if edits is None:
        return False
    if edits.replace is not None:
        return len(edits.replace) > max_len
    return any(_longest(value) > max_len for _, value in edits.sets)


class LimitsProcessor(Processor):
    type_name = "limits"
    config_model = LimitsConfig
    on_view = True
    columnar = True  # the batch's columns first: span views made only for a span over a limit

    def __init__(self, name: str, config: LimitsConfig, host: Host) -> None:
        super().__init__(name, config, host)
        metrics = limits_metrics(self.component_metrics())
        self._dropped = metrics.dropped
        self._truncated = metrics.truncated
        self._protected = frozenset(host.envelope.field_types)

    def process_view(self, batch: ViewBatch) -> ViewBatch:
        max_attrs = self.config.max_attributes_per_span
        max_len = self.config.max_attribute_value_length
        view = batch.view
        edits = batch.edits
        if any(resource.size > max_len or _edits_over(edits.resources.get(r), max_len)
               for r, resource in enumerate(view.resources)):
            self._process_trace(batch.trace)  # a resource over the limit: the protobuf path
            batch.sync_from_trace()
            return batch
        spans = view.spans
        edited = edits.spans
        # Decided per batch first, from the spans' columns (no view object per span) and each
        # group edit once: the most attributes any span may have after the edits so far (its
        # own sets and every group's, a bound), the largest span, and whether any value set is
        # long. Below every limit (the usual batch), nothing else to do.
        groups = edits.groups
        long_group = any(_edits_over(group.edits, max_len) for group in groups)
        counts = span_column(spans, "attr_count")
        sizes = span_column(spans, "size")
        most_added = max((len(e.sets) for e in edited.values() if e.replace is None), default=0)
        most_added += sum(len(group.edits.sets) for group in groups)
        if (not long_group and (not counts or max(counts) + most_added <= max_attrs and max(sizes) <= max_len)
                and not any(_edits_over(pending, max_len) for pending in edited.values())):
            return batch
        # Group edits (BatchEdits.groups): their sets counted per member, their values checked once.
        grouped: dict[int, int] = {}
        long: set[int] = set()
        for group in groups:
            added = len(group.edits.sets)
            if added:
                for index in group.spans:
                    grouped[index] = grouped.get(index, 0) + added
            if _edits_over(group.edits, max_len):
                long.update(group.spans)
        truncated = 0
        for index in batch.indices():
            pending = edited.get(index)
            count = counts[index]
            if pending is not None and pending.replace is None:
                count += len(pending.sets)  # at most this many after the edits: the exact count below
            if grouped:
                count += grouped.get(index, 0)
            over_count = count > max_attrs
            over_len = sizes[index] > max_len or _edits_over(pending, max_len) or (long and index in long)
            if over_count or over_len:
                truncated += self._bound(batch, index, max_attrs, max_len)
        if truncated:
            self._truncated.inc(truncated)
        return batch

    def _bound(self, batch: ViewBatch, index: int, max_attrs: int, max_len: int) -> int:
        """The slow path for one span: materialise it, bound it, put it back if it changed."""
        span = batch.materialize(index)
        before = span.SerializeToString()
        if len(span.attributes) > max_attrs:
            self._drop_excess(span, max_attrs)
        truncated = bound_span(span, max_len) if span.ByteSize() > max_len else 0
        if span.SerializeToString() != before:
            batch.replace(index, span)
        return truncated

    # -- the protobuf path (TraceBatch) ------------------------------------------------------
    def _process_trace(self, batch: TraceBatch) -> TraceBatch:
        max_attrs = self.config.max_attributes_per_span
        max_len = self.config.max_attribute_value_length
        raw = batch.raw
        check_values = raw is None or len(raw) > max_len
        truncated = 0
        for rec in batch.records:
            span = rec.span
            if len(span.attributes) > max_attrs:
                self._drop_excess(span, max_attrs)
                rec.attrs = index_attributes(span.attributes)
            if check_values and span.ByteSize() > max_len:
                truncated += bound_span(span, max_len)
        if check_values:
            for resource_spans in batch.request.resource_spans:
                if resource_spans.resource.ByteSize() > max_len:
                    truncated += bound_resource(resource_spans.resource, max_len)
        if truncated:
            self._truncated.inc(truncated)
            batch.raw = None  # the bytes as received no longer match
        return batch

    def _drop_excess(self, span, max_attrs: int) -> None:
        attributes = span.attributes
        keys = [kv.key for kv in attributes]
        # Envelope attributes first, then the others in order, up to the limit.
        keep = [i for i, key in enumerate(keys) if key in self._protected or key.startswith("costctx.")][:max_attrs]
        chosen = set(keep)
        for i in range(len(keys)):
            if len(chosen) >= max_attrs:
                break
            chosen.add(i)
        from opentelemetry.proto.common.v1.common_pb2 import KeyValue  # the protobuf path only

        kept = [KeyValue(key=attributes[i].key, value=attributes[i].value) for i in sorted(chosen)]
        dropped = len(keys) - len(kept)
        del attributes[:]
        attributes.extend(kept)
        span.dropped_attributes_count += dropped
        self._dropped.inc(dropped)

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

Cheap when nothing is over: a batch whose received bytes are shorter than the value limit
cannot hold a long value, and a span whose encoded size is below it is skipped (C-speed
ByteSize); the attribute count is a len().
"""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.pdata import TraceBatch
from costctx.pdata.attributes import index_attributes
from costctx.pdata.batch import SpanRecord
from costctx.processors.limits.bound import bound_resource, bound_span
from costctx.processors.limits.config import LimitsConfig
from costctx.processors.limits.metrics import limits_metrics


class LimitsProcessor(Processor):
    type_name = "limits"
    config_model = LimitsConfig

    def __init__(self, name: str, config: LimitsConfig, host: Host) -> None:
        super().__init__(name, config, host)
        metrics = limits_metrics(self.component_metrics())
        self._dropped = metrics.dropped
        self._truncated = metrics.truncated
        self._protected = frozenset(host.envelope.field_types)

    def process(self, batch: TraceBatch) -> TraceBatch:
        max_attrs = self.config.max_attributes_per_span
        max_len = self.config.max_attribute_value_length
        raw = batch.raw
        check_values = raw is None or len(raw) > max_len
        truncated = 0
        for rec in batch.records:
            span = rec.span
            if len(span.attributes) > max_attrs:
                self._drop_excess(rec, max_attrs)
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

    def _drop_excess(self, rec: SpanRecord, max_attrs: int) -> None:
        attributes = rec.span.attributes
        keys = [kv.key for kv in attributes]
        # Envelope attributes first, then the others in order, up to the limit.
        keep = [i for i, key in enumerate(keys) if key in self._protected or key.startswith("costctx.")][:max_attrs]
        chosen = set(keep)
        for i in range(len(keys)):
            if len(chosen) >= max_attrs:
                break
            chosen.add(i)
        kept = [KeyValue(key=attributes[i].key, value=attributes[i].value) for i in sorted(chosen)]
        dropped = len(keys) - len(kept)
        del attributes[:]
        attributes.extend(kept)
        rec.span.dropped_attributes_count += dropped
        rec.attrs = index_attributes(attributes)
        self._dropped.inc(dropped)

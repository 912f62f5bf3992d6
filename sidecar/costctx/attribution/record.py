"""The attribution record (ENVELOPE.md 1.1): one OTLP log record per settled span."""

from __future__ import annotations

from typing import TYPE_CHECKING

from costctx.attribution.pending import PendingSpan
from costctx.envelope.keys import COST_SOURCE, COST_USD
from costctx.pdata.attributes import set_any_value

if TYPE_CHECKING:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

EVENT_NAME = "costctx.attribution"
SCOPE_NAME = "costctx.attribution"
SETTLED_BY = "costctx.settled_by"
SETTLE_DELAY = "costctx.settle_delay_ms"


def attribution_request(settled: list[tuple[PendingSpan, dict, str, int]], now_ns: int) -> ExportLogsServiceRequest:
    """(span, settled context fields, settled_by, delay ms) -> one request, grouped by resource."""
    # Imported by the first settled span, not at start-up (the native codec needs no protobuf).
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    request = ExportLogsServiceRequest()
    scopes: dict[bytes, object] = {}
    for entry, fields, by, delay_ms in settled:
        scope_logs = scopes.get(entry.resource)
        if scope_logs is None:
            resource_logs = request.resource_logs.add()
            resource_logs.resource.CopyFrom(Resource.FromString(entry.resource))
            scope_logs = scopes[entry.resource] = resource_logs.scope_logs.add()
            scope_logs.scope.name = SCOPE_NAME
        record = scope_logs.log_records.add()
        record.time_unix_nano = now_ns
        record.observed_time_unix_nano = now_ns
        record.trace_id = entry.trace_id
        record.span_id = entry.span_id
        record.event_name = EVENT_NAME
        values = {**entry.fields, **fields}
        for key, value in values.items():
            kv = record.attributes.add()
            kv.key = key
            set_any_value(kv.value, value)
        for key, value in ((COST_USD, entry.cost_pico / 1e12), (COST_SOURCE, entry.price_source),
                           (SETTLED_BY, by), (SETTLE_DELAY, delay_ms)):
            if value == "":
                continue
            kv = record.attributes.add()
            kv.key = key
            set_any_value(kv.value, value)
    return request

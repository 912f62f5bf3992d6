"""Reading attribution records (OTLP logs) and spend views for the settlement tests."""

from __future__ import annotations

from typing import Any

from costctx.pdata.attributes import any_value_to_python


def attribution_records(sink) -> list[dict[str, Any]]:
    """Every costctx.attribution log record the sink received, flattened."""
    out = []
    with sink._lock:
        requests = list(sink.requests["logs"])
    for request in requests:
        for resource_logs in request.resource_logs:
            resource = {kv.key: any_value_to_python(kv.value) for kv in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    if record.event_name != "costctx.attribution":
                        continue
                    out.append({
                        "trace_id": record.trace_id.hex(), "span_id": record.span_id.hex(),
                        "resource": resource,
                        "attributes": {kv.key: any_value_to_python(kv.value) for kv in record.attributes},
                    })
    return out

"""What an OTLP export request holds, as text: a count line, one line per item, or all of it.

Shared by the `debug` exporter (what the sidecar would send) and `costctx sink` (what arrived).
The three verbosities are the Collector debug exporter's: basic, normal, detailed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costctx.pdata.attributes import any_value_to_python
from costctx.pdata.signals import Signal

if TYPE_CHECKING:
    from google.protobuf.message import Message

VERBOSITIES = ("basic", "normal", "detailed")


def _spans(message: Any):
    for rs in message.resource_spans:
        service = next((kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"), "")
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield service, span


def _data_points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def item_count(signal: Signal, message: Message) -> int:
    """Spans, metric data points or log records in one request."""
    if signal.name == "traces":
        return sum(1 for _ in _spans(message))
    if signal.name == "metrics":
        return sum(_data_points(m) for rm in message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
    return sum(len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs)


_ITEM_NAME = {"traces": "spans", "metrics": "data points", "logs": "log records"}


def summary(signal: Signal, message: Message) -> str:
    return f"{signal.name}: {item_count(signal, message)} {_ITEM_NAME[signal.name]}"


def _item_lines(signal: Signal, message: Any) -> list[str]:
    if signal.name == "traces":
        lines = []
        for service, span in _spans(message):
            attributes = {kv.key: any_value_to_python(kv.value) for kv in span.attributes}
            lines.append(f"  span {span.name!r} service={service or '-'} trace={span.trace_id.hex()} "
                         f"span={span.span_id.hex()} {attributes}")
        return lines
    if signal.name == "metrics":
        return [f"  metric {m.name!r} {_data_points(m)} points"
                for rm in message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    return [f"  log {any_value_to_python(r.body)!r}"
            for rl in message.resource_logs for sl in rl.scope_logs for r in sl.log_records]


def describe(signal: Signal, message: Message, verbosity: str = "basic") -> list[str]:
    """`basic`: the count line; `normal`: plus one line per item; `detailed`: plus the request as JSON."""
    lines = [summary(signal, message)]
    if verbosity in ("normal", "detailed"):
        lines.extend(_item_lines(signal, message))
    if verbosity == "detailed":
        from google.protobuf import json_format  # only the detailed verbosity needs it

        lines.extend(json_format.MessageToJson(message, indent=2).splitlines())
    return lines

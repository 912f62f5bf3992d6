"""OTLP/JSON: protobuf JSON mapping with the OTLP quirks.

Trace and span ids are hex, not base64; enums are integers (ParseDict accepts them);
unknown fields are ignored; 64-bit integers may be strings (ParseDict accepts them).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from costctx.pdata.signals import Signal
from costctx.receivers.otlp.ingest import IngestError

_ID_LENGTHS = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            size = _ID_LENGTHS.get(key)
            if size is not None and isinstance(value, str):
                if value == "":
                    continue
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise IngestError("invalid", f"{key} {value[:40]!r} is not hex") from None
                if len(raw) != size:
                    raise IngestError("invalid", f"{key} must be {size} bytes ({size * 2} hex digits)")
                node[key] = base64.b64encode(raw).decode("ascii")
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def decode_json(signal: Signal, body: bytes) -> Message:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError("invalid", f"cannot decode {signal.name} JSON request: {exc}") from None
    if not isinstance(data, dict):
        raise IngestError("invalid", f"a {signal.name} JSON request must be an object")
    _hex_ids_to_base64(data)
    message = signal.request_type()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise IngestError("invalid", f"invalid {signal.name} JSON request: {exc}") from None
    return message


def encode_json(message: Message) -> bytes:
    """Responses carry no ids, so the plain protobuf JSON mapping is OTLP/JSON here."""
    return json_format.MessageToJson(message, indent=None).encode("utf-8")

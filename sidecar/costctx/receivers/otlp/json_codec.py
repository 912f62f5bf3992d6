"""OTLP/JSON: protobuf JSON mapping with the OTLP quirks.

Trace and span ids are hex, not base64; enums are integers (ParseDict accepts them);
unknown fields are ignored; 64-bit integers may be strings (ParseDict accepts them).
Before ParseDict the document is checked against the message's shape (json_shape): objects
where messages belong, valid base64 in `bytesValue`, nesting bounded; a span's and a link's
trace and span ids must be valid (the OTLP proto: empty or all-zero ids are invalid).
"""

from __future__ import annotations

import base64
import json

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from costctx.pdata.json_shape import ShapeError, check_base64, check_json_shape
from costctx.pdata.signals import EmptyResponse, Signal
from costctx.receivers.otlp.ingest import IngestError

# Objects and arrays in one JSON request. json.loads makes a Python object of each (~140 bytes
# with what follows, however small in the text): 4 MiB of `{}` reached 272 MiB. This bound
# (~37 MB) holds ~8,000 spans of 15 attributes; it counts `{` and `[` inside strings too, so
# it errs towards refusing: such a client should send protobuf.
MAX_CONTAINERS = 262_144

_ID_SIZES = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
# Where ids are required: a span and a link name a span. Log records and exemplars may carry
# none, and an empty parent span id means a root span.
_REQUIRED_IDS = {
    ("opentelemetry.proto.trace.v1.Span", "trace_id"),
    ("opentelemetry.proto.trace.v1.Span", "span_id"),
    ("opentelemetry.proto.trace.v1.Span.Link", "trace_id"),
    ("opentelemetry.proto.trace.v1.Span.Link", "span_id"),
}


def _otlp_bytes(message: Descriptor, field: FieldDescriptor, value: str) -> str:
    """Ids are hex in OTLP/JSON; every other bytes field is base64 as in protobuf JSON."""
    size = _ID_SIZES.get(field.name)
    if size is None:
        return check_base64(value, field.json_name)
    key = field.json_name
    required = (message.full_name, field.name) in _REQUIRED_IDS
    if value == "":
        if required:
            raise ShapeError(f"{key} is empty; a {message.name.lower()} needs a {size}-byte {key}")
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ShapeError(f"{key} {value[:40]!r} is not hex") from None
    if len(raw) != size:
        raise ShapeError(f"{key} must be {size} bytes ({size * 2} hex digits)")
    if required and raw == bytes(size):
        raise ShapeError(f"{key} is all zeros, which OTLP defines as invalid")
    return base64.b64encode(raw).decode("ascii")


def decode_json(signal: Signal, body: bytes) -> Message:
    containers = body.count(b"{") + body.count(b"[")  # C-speed, before any object is made
    if containers > MAX_CONTAINERS:
        raise IngestError("too_large", f"{signal.name} JSON request has over {MAX_CONTAINERS} objects and arrays; "
                                       "send smaller batches (or protobuf)")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the interpreter's stack; the client's error.
        raise IngestError("invalid", f"cannot decode {signal.name} JSON request: {exc}") from None
    message = signal.request_type()
    try:
        check_json_shape(data, message.DESCRIPTOR, _otlp_bytes)
    except ShapeError as exc:
        raise IngestError("invalid", f"invalid {signal.name} JSON request: {exc}") from None
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise IngestError("invalid", f"invalid {signal.name} JSON request: {exc}") from None
    return message


def encode_json(message: Message) -> bytes:
    """Responses carry no ids, so the plain protobuf JSON mapping is OTLP/JSON here."""
    if isinstance(message, EmptyResponse):
        message = message.as_message()
    return json_format.MessageToJson(message, indent=None).encode("utf-8")

"""google.rpc.Status as an HTTP body, in the request's encoding (what OTLP/HTTP specifies for
errors): kept apart from the aiohttp helpers so the admin port's server can answer alike without
importing aiohttp."""

from __future__ import annotations

import json

# google.rpc.Code values (fixed by google/rpc/code.proto): named here so the error paths need not
# import protobuf's code_pb2 at start-up (tests/transport check them against it).
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
UNAVAILABLE = 14
UNAUTHENTICATED = 16

PROTOBUF = "application/x-protobuf"
JSON = "application/json; charset=utf-8"


def status_body(code: int, message: str, request_content_type: str) -> tuple[bytes, str]:
    """-> (body, content type): protobuf for a protobuf request, else JSON."""
    if request_content_type == PROTOBUF:
        from google.rpc import status_pb2  # only when an error is answered in protobuf

        return status_pb2.Status(code=code, message=message).SerializeToString(), PROTOBUF
    return json.dumps({"code": code, "message": message}).encode(), JSON

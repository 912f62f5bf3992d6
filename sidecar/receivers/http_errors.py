"""A body the client cannot deliver intact (bad gzip, truncated) is its error, not ours: 400.

aiohttp raises RequestPayloadError from `request.read()` for these; a handler that does not
catch it (any route another component adds to the OTLP HTTP server) would answer 500.
This middleware turns it into 400 with a google.rpc.Status body for every route.
"""

from __future__ import annotations

from aiohttp import web
from google.rpc import code_pb2, status_pb2

PROTOBUF = "application/x-protobuf"


@web.middleware
async def unreadable_body_is_a_bad_request(request: web.Request, handler):
    try:
        return await handler(request)
    except web.RequestPayloadError as exc:
        message = f"cannot read request body: {exc}"
        if request.content_type == PROTOBUF:
            body = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message).SerializeToString()
            return web.Response(status=400, body=body, content_type=PROTOBUF)
        return web.json_response({"code": code_pb2.INVALID_ARGUMENT, "message": message}, status=400)

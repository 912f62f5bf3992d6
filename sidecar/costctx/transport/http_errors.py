"""Error answers on the HTTP servers: a google.rpc.Status body in the request's encoding.

OTLP/HTTP specifies a google.rpc.Status body for errors, protobuf or JSON as the request
was; every route on the sidecar's HTTP servers (OTLP, the budget check, auth refusals)
answers its errors with `status_response`, so they all look alike to a client.

A body the client cannot deliver intact (bad gzip, truncated) is its error, not ours: 400.
aiohttp raises RequestPayloadError from `request.read()` for these; a handler that does not
catch it (any route another component adds to the OTLP HTTP server) would answer 500.
`unreadable_body_is_a_bad_request` turns it into 400 for every route.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from costctx.transport.rpc_status import INVALID_ARGUMENT, PROTOBUF, status_body

__all__ = ["JSON", "PROTOBUF", "status_response", "unreadable_body_is_a_bad_request"]

JSON = "application/json"


def status_response(http_status: int, code: int, message: str, content_type: str,
                    headers: Mapping[str, str] | None = None) -> web.Response:
    """google.rpc.Status `code`/`message` as protobuf for a protobuf request, else as JSON."""
    body, body_type = status_body(code, message, content_type)
    return web.Response(status=http_status, body=body, headers={**(headers or {}), "Content-Type": body_type})


@web.middleware
async def unreadable_body_is_a_bad_request(request: web.Request, handler):
    try:
        return await handler(request)
    except web.RequestPayloadError as exc:
        return status_response(400, INVALID_ARGUMENT, f"cannot read request body: {exc}",
                               request.content_type)

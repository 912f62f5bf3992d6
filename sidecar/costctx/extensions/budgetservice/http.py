"""BudgetService over HTTP (JSON or protobuf) on the OTLP/HTTP receiver's port: /v1/budget/check
and /v1/budget/release, validated as the gRPC service validates (service.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from costctx.budget.engine import BudgetEngine
from costctx.extensions.budgetservice.service import BadRequest, validate, validate_release
from costctx.pdata.json_shape import ShapeError, check_json_shape
from costctx.transport.http_body import ROUTE_ADMISSION, BodyError, Refused, read_body
from costctx.transport.http_errors import PROTOBUF, status_response
from costctx.transport.rpc_status import INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

# protobuf (json_format, budget_pb2) is imported by the first budget call, not at start-up.

# A CheckRequest is a few hundred bytes; this leaves room for long ids and many owner fields
# while four concurrent requests cannot grow the process by more than a few MiB.
MAX_HTTP_BODY = 64 * 1024
_HTTP_STATUS = {"too_large": 413, "invalid": 400, "unsupported": 415}


def _parse(body: bytes, content_type: str, message):
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    try:
        if content_type == PROTOBUF:
            message.ParseFromString(body)
        else:
            data = json.loads(body or b"{}")
            # json_format reads `"envelope": "x"` as an empty envelope: check the shape first.
            check_json_shape(data, message.DESCRIPTOR)
            json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ShapeError, ValueError, RecursionError) as exc:
        raise BadRequest(str(exc)) from None
    return message


def _reply(message, content_type: str) -> web.Response:
    if content_type == PROTOBUF:
        return web.Response(body=message.SerializeToString(), content_type=PROTOBUF)
    from google.protobuf import json_format

    text = json_format.MessageToJson(message, always_print_fields_with_no_presence=True, indent=None)
    return web.Response(text=text, content_type="application/json")


def _bad(reason: str, content_type: str) -> web.Response:
    # google.rpc.Status in the request's encoding, as the OTLP/HTTP receiver answers bad input.
    return status_response(400, INVALID_ARGUMENT, reason, content_type)


async def _read(request: web.Request) -> bytes | web.Response:
    """The body, bounded and admitted (memory limiter) as it streams; or the error response."""
    route_admission = request.app.get(ROUTE_ADMISSION)

    def admit(size: int) -> None:
        if route_admission is not None:
            route_admission("budget", size)

    try:
        admit(request.content_length or 0)  # before reading: a refusal costs nothing
        return await read_body(request, MAX_HTTP_BODY, admit)
    except BodyError as error:
        code = RESOURCE_EXHAUSTED if error.kind == "too_large" else INVALID_ARGUMENT
        return status_response(_HTTP_STATUS[error.kind], code, error.message, request.content_type)
    except Refused as error:  # the memory limiter's retryable refusal
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
        return status_response(503, UNAVAILABLE, error.message, request.content_type, headers)


def _route(kind: str, check_fields: Callable[[Message], None],
           act: Callable[[Message], Awaitable[Message]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A POST handler: bounded body, parsed as budget_pb2's `kind` (protobuf or JSON), checked, acted on."""

    async def handle(request: web.Request) -> web.Response:
        body = await _read(request)
        if isinstance(body, web.Response):
            return body
        from costctx.proto_gen.costctx.v1 import budget_pb2

        try:
            message = _parse(body, request.content_type, getattr(budget_pb2, kind)())
            check_fields(message)
        except BadRequest as exc:
            return _bad(f"bad {kind}: {exc}", request.content_type)
        return _reply(await act(message), request.content_type)

    return handle


def http_routes(engine: BudgetEngine) -> list[web.RouteDef]:
    async def release(message: pb.ReleaseRequest) -> pb.ReleaseResponse:
        from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

        return pb.ReleaseResponse(released=await engine.release(message.reservation_id))

    return [web.post("/v1/budget/check", _route("CheckRequest", validate, engine.check)),
            web.post("/v1/budget/release", _route("ReleaseRequest", validate_release, release))]

"""BudgetService on the sidecar's ports: gRPC (costctx.v1.BudgetService) and JSON over HTTP.

Handlers parse the bytes themselves so a malformed request gets INVALID_ARGUMENT / 400
with a reason, as the OTLP receivers do.
"""

from __future__ import annotations

import json
import math

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2

from costctx.budget.counters import MAX_TOKENS, MAX_USD
from costctx.budget.engine import BudgetEngine
from costctx.budget.ids import envelope_id_problem, valid_reservation_id
from costctx.pdata.json_shape import ShapeError, check_json_shape
from costctx.proto_gen.costctx.v1 import budget_pb2 as pb
from costctx.transport.http_body import ROUTE_ADMISSION, BodyError, Refused, read_body
from costctx.transport.http_errors import PROTOBUF, status_response

SERVICE = "costctx.v1.BudgetService"
# A CheckRequest is a few hundred bytes; this leaves room for long ids and many owner fields
# while four concurrent requests cannot grow the process by more than a few MiB.
MAX_HTTP_BODY = 64 * 1024
_HTTP_STATUS = {"too_large": 413, "invalid": 400, "unsupported": 415}


class BadRequest(ValueError):
    pass


def validate(request: pb.CheckRequest) -> None:
    cost = request.estimated_cost_usd
    if math.isnan(cost) or not 0 <= cost <= MAX_USD:
        raise BadRequest(f"estimated_cost_usd must be a number from 0 to {MAX_USD:g}")
    for tokens in (request.estimated_input_tokens, request.estimated_output_tokens):
        if not 0 <= tokens <= MAX_TOKENS:
            raise BadRequest(f"estimated token counts must be from 0 to {MAX_TOKENS}")
    envelope = request.envelope
    if envelope.retry_attempt < 0:
        raise BadRequest("envelope.retry_attempt must be >= 0")
    if request.trace_id and len(request.trace_id) != 16 or request.span_id and len(request.span_id) != 8:
        raise BadRequest("trace_id must be 16 bytes and span_id 8 bytes (or both left empty)")
    for name, value in (("workflow_id", envelope.workflow_id), ("workflow_name", envelope.workflow_name),
                        ("policy_id", envelope.policy_id), ("owner.tenant", envelope.owner.tenant),
                        ("owner.feature", envelope.owner.feature)):
        problem = envelope_id_problem(f"envelope.{name}", value)
        if problem:
            raise BadRequest(problem)


def validate_release(request: pb.ReleaseRequest) -> None:
    # An empty id names no reservation and answers released=false, as before.
    if request.reservation_id and not valid_reservation_id(request.reservation_id):
        raise BadRequest("reservation_id must be 1 to 64 of A-Z a-z 0-9 _ . - (then ~<tenant> on a Redis Cluster)")


def grpc_handlers(engine: BudgetEngine) -> list[grpc.GenericRpcHandler]:
    async def check(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            request = pb.CheckRequest.FromString(body)
            validate(request)
        except (DecodeError, BadRequest) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CheckRequest: {exc}")
        return (await engine.check(request)).SerializeToString()

    async def release(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            request = pb.ReleaseRequest.FromString(body)
            validate_release(request)
        except (DecodeError, BadRequest) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad ReleaseRequest: {exc}")
        return pb.ReleaseResponse(released=await engine.release(request.reservation_id)).SerializeToString()

    methods = {
        "Check": grpc.unary_unary_rpc_method_handler(check),
        "Release": grpc.unary_unary_rpc_method_handler(release),
    }
    return [grpc.method_handlers_generic_handler(SERVICE, methods)]


def _parse(body: bytes, content_type: str, message):
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
    text = json_format.MessageToJson(message, always_print_fields_with_no_presence=True, indent=None)
    return web.Response(text=text, content_type="application/json")


def _bad(reason: str, content_type: str) -> web.Response:
    # google.rpc.Status in the request's encoding, as the OTLP/HTTP receiver answers bad input.
    return status_response(400, code_pb2.INVALID_ARGUMENT, reason, content_type)


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
        code = code_pb2.RESOURCE_EXHAUSTED if error.kind == "too_large" else code_pb2.INVALID_ARGUMENT
        return status_response(_HTTP_STATUS[error.kind], code, error.message, request.content_type)
    except Refused as error:  # the memory limiter's retryable refusal
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
        return status_response(503, code_pb2.UNAVAILABLE, error.message, request.content_type, headers)


def http_routes(engine: BudgetEngine) -> list[web.RouteDef]:
    async def check(request: web.Request) -> web.Response:
        body = await _read(request)
        if isinstance(body, web.Response):
            return body
        try:
            message = _parse(body, request.content_type, pb.CheckRequest())
            validate(message)
        except BadRequest as exc:
            return _bad(f"bad CheckRequest: {exc}", request.content_type)
        return _reply(await engine.check(message), request.content_type)

    async def release(request: web.Request) -> web.Response:
        body = await _read(request)
        if isinstance(body, web.Response):
            return body
        try:
            message = _parse(body, request.content_type, pb.ReleaseRequest())
            validate_release(message)
        except BadRequest as exc:
            return _bad(f"bad ReleaseRequest: {exc}", request.content_type)
        return _reply(pb.ReleaseResponse(released=await engine.release(message.reservation_id)), request.content_type)

    return [web.post("/v1/budget/check", check), web.post("/v1/budget/release", release)]

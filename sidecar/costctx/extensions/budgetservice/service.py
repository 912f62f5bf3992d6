"""BudgetService on the sidecar's ports: gRPC (costctx.v1.BudgetService) here, JSON or protobuf
over HTTP in `http.py` (imported only with an HTTP receiver: aiohttp is ~9 MB of RSS).

Handlers parse the bytes themselves so a malformed request gets INVALID_ARGUMENT / 400
with a reason, as the OTLP receivers do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import grpc

from costctx.budget.counters import MAX_TOKENS, MAX_USD
from costctx.budget.engine import BudgetEngine
from costctx.budget.ids import envelope_id_problem, valid_reservation_id

if TYPE_CHECKING:
    from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

SERVICE = "costctx.v1.BudgetService"


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
    # protobuf is imported by the first call, not at start-up (the native codec needs none).
    async def check(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        from google.protobuf.message import DecodeError

        from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

        try:
            request = pb.CheckRequest.FromString(body)
            validate(request)
        except (DecodeError, BadRequest) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CheckRequest: {exc}")
        return (await engine.check(request)).SerializeToString()

    async def release(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        from google.protobuf.message import DecodeError

        from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

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

"""OTLP/gRPC receiver: TraceService, MetricsService and LogsService Export.

Handlers take the raw request bytes (no generated deserializer) so that a malformed body
gets INVALID_ARGUMENT with a reason, and metrics and logs are forwarded byte for byte.
Requests larger than `max_recv_msg_size_mib` (default 4, as the Collector's) are refused
by grpc with RESOURCE_EXHAUSTED before they are buffered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from costctx.pdata.signals import SIGNALS, Signal
from costctx.receivers.otlp.ingest import Ingest, IngestError, Route
from costctx.transport.grpc_refusal import refusing

_CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
}


def retry_info_trailer(code: grpc.StatusCode, message: str, delay: float) -> tuple[tuple[str, bytes], ...]:
    """A `grpc-status-details-bin` trailer carrying google.rpc.RetryInfo, as OTLP asks."""
    from google.protobuf import duration_pb2  # a refusal only: not loaded at start-up
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int((delay % 1) * 1e9))
    )
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(info)
    return (("grpc-status-details-bin", status.SerializeToString()),)


async def abort_with(context: grpc.aio.ServicerContext, error: IngestError) -> None:
    code = _CODES[error.kind]
    trailer = ()
    if error.retry_after is not None:
        trailer = retry_info_trailer(code, error.message, error.retry_after)
    await context.abort(code, error.message, trailing_metadata=trailer)


async def _one_message(requests: AsyncIterator[bytes]) -> bytes | None:
    async for request in requests:
        return request
    return None


def _export_handler(ingest: Ingest, signal: Signal):
    async def export(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        try:
            # Before the message is read: under memory pressure a refusal costs nothing.
            ingest.admit(signal, 0, "grpc")
        except IngestError as error:
            await abort_with(context, error)
        request = await _one_message(requests)
        if request is None:
            await abort_with(context, IngestError("invalid", "no request message"))
        try:
            ingest.admit(signal, len(request), "grpc")  # counted by ingest when refused
        except IngestError as error:
            await abort_with(context, error)
        return await _export(ingest, signal, request, context)

    return export


def _unary_export_handler(ingest: Ingest, signal: Signal):
    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await _export(ingest, signal, request, context)

    return export


async def _export(ingest: Ingest, signal: Signal, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    try:
        # The raw bytes: traces are read by the pipeline's codec, the rest decoded by ingest.
        response = ingest.export_protobuf(signal, request, "grpc")
    except IngestError as error:  # counted by ingest
        await abort_with(context, error)  # raises: the RPC ends here
    return response.SerializeToString()


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """The admission checks (memory limiter) for every other method on the server (the budget
    service): under memory pressure a call is refused, UNAVAILABLE with RetryInfo, before its
    message is read. OTLP Export admits itself, with the message's size."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self._exports = {signal.grpc_method for signal in SIGNALS.values()}

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self._exports:
            return handler
        try:
            service = method.rsplit("/", 2)[-2].rsplit(".", 1)[-1]  # /costctx.v1.BudgetService/Check -> budget
            self.ingest.admit(Route(service.lower().removesuffix("service")), 0, "grpc")
        except IngestError as error:
            code = _CODES[error.kind]
            trailer = retry_info_trailer(code, error.message, error.retry_after) if error.retry_after else ()
            return refusing(handler, code, error.message, trailer)
        return handler


def otlp_grpc_handlers(ingest: Ingest) -> list[grpc.GenericRpcHandler]:
    """Export for each signal. With admission checks (memory limiter), served as client-
    streaming (one message on the wire, as unary) so that the handler runs before the message
    is received and can refuse without reading it. Without any, as unary: grpc hands over the
    message with the call, sparing the stream's read (~0.1 ms of the event loop per request)."""
    handlers = []
    for signal in SIGNALS.values():
        if ingest.admission_checks:
            method = grpc.stream_unary_rpc_method_handler(
                _export_handler(ingest, signal), request_deserializer=None, response_serializer=None
            )
        else:
            method = grpc.unary_unary_rpc_method_handler(
                _unary_export_handler(ingest, signal), request_deserializer=None, response_serializer=None
            )
        handlers.append(grpc.method_handlers_generic_handler(signal.service, {"Export": method}))
    return handlers

"""A gRPC server interceptor: every method on the server (OTLP, budget, ...) needs a bearer token."""

from __future__ import annotations

import grpc

from costctx.extensions.bearertokenauth.tokens import BearerTokens

MESSAGE = "missing or invalid bearer token"


async def _deny_unary(request_iterator, context: grpc.aio.ServicerContext):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)


async def _deny_stream(request_iterator, context: grpc.aio.ServicerContext):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)
    yield b""  # pragma: no cover - makes this an async generator; abort raises first


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler that refuses with UNAUTHENTICATED without reading the request message.

    A unary handler would have grpc receive (and hold) the whole message before the refusal:
    four 56 MB requests without a token reached 523 MiB. As a client-streaming handler that
    never iterates its requests, the refusal comes straight after the metadata. On the wire a
    unary call and a one-message stream are alike, so the client sees a plain UNAUTHENTICATED."""
    kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny_stream, **kwargs)
    return grpc.stream_unary_rpc_method_handler(_deny_unary, **kwargs)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: BearerTokens, on_refused=None) -> None:
        self.tokens = tokens
        self.on_refused = on_refused or (lambda method: None)

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: UNIMPLEMENTED, as without auth
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value
                break
        if self.tokens.valid(authorization):
            return handler
        self.on_refused(handler_call_details.method)
        return _denying(handler)

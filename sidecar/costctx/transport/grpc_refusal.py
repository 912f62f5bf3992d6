"""A gRPC method handler that refuses a call without reading its request message.

A unary handler has grpc receive (and hold) the whole message before it runs: four 56 MB
requests refused for a missing token reached 523 MiB. Served as client-streaming and never
iterating its requests, the refusal comes straight after the metadata. On the wire a unary
call and a one-message stream are alike, so the client sees a plain status."""

from __future__ import annotations

from collections.abc import Sequence

import grpc


def refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
             trailing_metadata: Sequence[tuple[str, bytes | str]] = ()) -> grpc.RpcMethodHandler:
    """A handler in place of `handler` that ends every call with `code` and `message`."""

    async def refuse_unary(request_iterator, context: grpc.aio.ServicerContext):
        await context.abort(code, message, trailing_metadata=tuple(trailing_metadata))

    async def refuse_stream(request_iterator, context: grpc.aio.ServicerContext):
        await context.abort(code, message, trailing_metadata=tuple(trailing_metadata))
        yield b""  # pragma: no cover - makes this an async generator; abort raises first

    kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.stream_unary_rpc_method_handler(refuse_unary, **kwargs)

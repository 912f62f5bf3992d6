"""A gRPC server interceptor: every method on the server (OTLP, budget, ...) needs a bearer token."""

from __future__ import annotations

import grpc

from costctx.extensions.bearertokenauth.tokens import BearerTokens
from costctx.transport.grpc_refusal import refusing

MESSAGE = "missing or invalid bearer token"


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
        # Refused before the request message is read (transport/grpc_refusal.py).
        return refusing(handler, grpc.StatusCode.UNAUTHENTICATED, MESSAGE)

"""An aiohttp middleware: every route on the app needs a bearer token, except the open ones."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from google.rpc import code_pb2, status_pb2

from sidecar.security.tokens import BearerTokens

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def bearer_auth_middleware(
    tokens: BearerTokens, open_paths: frozenset[str] = frozenset(), on_refused: Callable[[str], None] | None = None
):
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path in open_paths or tokens.valid(request.headers.get("Authorization")):
            return await handler(request)
        if on_refused is not None:
            on_refused(request.path)
        message = "missing or invalid bearer token"
        headers = {"WWW-Authenticate": f'{tokens.scheme.capitalize()} realm="costctx"'}
        # An OTLP client gets the google.rpc.Status body OTLP/HTTP specifies, in its encoding.
        status = status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=message)
        if request.content_type == PROTOBUF:
            return web.Response(status=401, body=status.SerializeToString(), content_type=PROTOBUF, headers=headers)
        return web.json_response({"code": code_pb2.UNAUTHENTICATED, "message": message}, status=401, headers=headers)

    return auth

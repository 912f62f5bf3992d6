"""An aiohttp middleware: every route on the app needs a bearer token, except the open ones."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from costctx.extensions.bearertokenauth.tokens import BearerTokens
from costctx.transport.http_errors import status_response
from costctx.transport.rpc_status import UNAUTHENTICATED


def bearer_auth_middleware(
    tokens: BearerTokens, open_paths: frozenset[str] = frozenset(), on_refused: Callable[[str], None] | None = None
):
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path in open_paths or tokens.valid(request.headers.get("Authorization")):
            return await handler(request)
        if on_refused is not None:
            on_refused(request.path)
        headers = {"WWW-Authenticate": f'{tokens.scheme.capitalize()} realm="costctx"'}
        # An OTLP client gets the google.rpc.Status body OTLP/HTTP specifies, in its encoding.
        return status_response(401, UNAUTHENTICATED, "missing or invalid bearer token", request.content_type,
                               headers)

    return auth

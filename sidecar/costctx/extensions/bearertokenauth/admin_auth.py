"""Bearer-token auth on the telemetry (admin) port: a guard every route passes, except the open
ones (kubelet probes carry no token). Refusals answer as http_auth's middleware does on the OTLP
port: 401, WWW-Authenticate, a google.rpc.Status body in the request's encoding."""

from __future__ import annotations

from collections.abc import Callable

from costctx.extensions.bearertokenauth.tokens import BearerTokens
from costctx.transport.admin_http import AdminRequest, AdminResponse, Guard
from costctx.transport.rpc_status import UNAUTHENTICATED, status_body

MESSAGE = "missing or invalid bearer token"


def bearer_auth_guard(tokens: BearerTokens, open_paths: frozenset[str] = frozenset(),
                      on_refused: Callable[[str], None] | None = None) -> Guard:
    def guard(request: AdminRequest) -> AdminResponse | None:
        if request.path in open_paths or tokens.valid(request.headers.get("authorization")):
            return None
        if on_refused is not None:
            on_refused(request.path)
        headers = {"WWW-Authenticate": f'{tokens.scheme.capitalize()} realm="costctx"'}
        body, content_type = status_body(UNAUTHENTICATED, MESSAGE, request.content_type)
        return AdminResponse(401, body, content_type, headers)

    return guard

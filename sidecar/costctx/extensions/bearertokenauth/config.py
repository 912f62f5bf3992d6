"""The `bearertokenauth` extension's config section (the Collector's names)."""

from __future__ import annotations

from pydantic import model_validator

from costctx.config.types import StrictModel


class BearerTokenAuthConfig(StrictModel):
    """`extensions: bearertokenauth[/name]:` (Collector names), listed in service.extensions.
    A server names it with `auth: {authenticator: bearertokenauth/name}`; one that no server
    names covers every server that names none (the OTLP gRPC and HTTP receivers, the budget
    services on them, the admin port except /healthz and /readyz). Requests must carry
    `authorization: <scheme> <token>` (service/config/auth.py resolves who checks what)."""

    # One token per line (several lines: old and new both valid during a rotation); the file
    # is re-read when it changes.
    filename: str | None = None
    token: str | None = None  # inline, e.g. ${env:COSTCTX_TOKEN}; prefer `filename`
    scheme: str = "Bearer"

    @model_validator(mode="after")
    def _one_source(self) -> BearerTokenAuthConfig:
        if (self.filename is None) == (self.token is None):
            raise ValueError("set exactly one of filename, token")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty")
        return self

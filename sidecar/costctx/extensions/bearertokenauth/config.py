"""The `bearertokenauth` extension's config section (the Collector's names)."""

from __future__ import annotations

from pydantic import model_validator

from costctx.config.types import StrictModel


class BearerTokenAuthConfig(StrictModel):
    """`extensions: bearertokenauth:` (Collector names). When present, every server the sidecar
    runs (OTLP gRPC and HTTP, the budget services on them, the admin port except /healthz and
    /readyz) requires `authorization: <scheme> <token>`."""

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

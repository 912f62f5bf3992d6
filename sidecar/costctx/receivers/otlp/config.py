"""The `otlp` receiver's config section: which protocols listen, where, with what limits and TLS."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from costctx.config.server import GrpcProtocolConfig, HttpProtocolConfig
from costctx.config.types import StrictModel


class OtlpProtocolsConfig(StrictModel):
    """As in the Collector: a protocol named (even with no settings) is on; one left out is off."""

    grpc: GrpcProtocolConfig | None = None
    http: HttpProtocolConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _named_means_enabled(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _at_least_one(self) -> OtlpProtocolsConfig:
        if self.grpc is None and self.http is None:
            raise ValueError("enable at least one of grpc, http")
        return self


class OtlpReceiverConfig(StrictModel):
    protocols: OtlpProtocolsConfig = Field(
        default_factory=lambda: OtlpProtocolsConfig(grpc=GrpcProtocolConfig(), http=HttpProtocolConfig())
    )

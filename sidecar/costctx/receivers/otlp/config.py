"""The `otlp` receiver's config section: which protocols listen, where, with what limits and TLS."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, model_validator

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
    # Spans, data points or log records in one request, on either transport; more: 413 /
    # RESOURCE_EXHAUSTED. Each item costs ~2.5 KB in the pipeline however small it is on the
    # wire: 4 MiB of empty spans (2M) reached 5 GiB. An SDK batch is 512, a Collector's 8192.
    max_items_per_request: PositiveInt = 8192

"""The `otlp` (gRPC) and `otlphttp` exporters' config sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from costctx.config.tls import TlsClientConfig
from costctx.config.types import Duration, StrictModel, check_http_url, normalize_grpc_target
from costctx.exporters.exporterhelper.config import RetryConfig, SendingQueueConfig


class ExporterCommonConfig(StrictModel):
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "none", ""] = "gzip"
    timeout: Duration = 5.0
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig)
    sending_queue: SendingQueueConfig = Field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = Field(default_factory=RetryConfig)

    @property
    def gzip(self) -> bool:
        return self.compression == "gzip"


class OtlpGrpcExporterConfig(ExporterCommonConfig):
    """`exporters: otlp:` sends OTLP over gRPC."""

    endpoint: str
    insecure: bool | None = None

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        normalize_grpc_target(value)
        return value

    @property
    def target(self) -> str:
        return normalize_grpc_target(self.endpoint)[0]

    @property
    def use_tls(self) -> bool:
        if self.insecure is not None:
            return not self.insecure
        if self.tls.insecure:
            return False
        implied_insecure = normalize_grpc_target(self.endpoint)[1]
        return not implied_insecure if implied_insecure is not None else True


class OtlpHttpExporterConfig(ExporterCommonConfig):
    """`exporters: otlphttp:` sends OTLP/HTTP protobuf to <endpoint>/v1/<signal>."""

    endpoint: str

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return check_http_url(value)

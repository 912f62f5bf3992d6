"""Typed config objects, one per component, in the OpenTelemetry Collector's YAML shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from costctx.config.types import (
    Duration,
    ListenEndpoint,
    StrictModel,
    check_http_url,
    normalize_grpc_target,
)

MiB = 1024 * 1024
SIGNALS = ("traces", "metrics", "logs")


# -- receivers ---------------------------------------------------------------------------
class TlsServerConfig(StrictModel):
    """TLS on a receiver (Collector names). `client_ca_file` turns on mutual TLS: clients must
    present a certificate signed by that CA."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class GrpcProtocolConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4317"
    max_recv_msg_size_mib: PositiveInt = 64
    tls: TlsServerConfig | None = None


class HttpProtocolConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4318"
    max_request_body_size: PositiveInt = 64 * MiB
    tls: TlsServerConfig | None = None


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


class ReceiversConfig(StrictModel):
    otlp: OtlpReceiverConfig = Field(default_factory=OtlpReceiverConfig)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data


# -- exporters ---------------------------------------------------------------------------
class RetryConfig(StrictModel):
    """Exponential backoff on retryable errors only; defaults are the Collector's."""

    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


class QueueStorageConfig(StrictModel):
    """A persistent sending queue (the Collector's `storage: file_storage`), in one SQLite file."""

    directory: str
    max_bytes: PositiveInt = 1024 * MiB  # bound on disk; when full, clients get retryable refusals
    fsync: Literal["always", "batch", "never"] = "always"


class SendingQueueConfig(StrictModel):
    num_consumers: PositiveInt = 10
    queue_size: PositiveInt = 1000
    storage: QueueStorageConfig | None = None  # None: in memory, lost on a crash


class TlsClientConfig(StrictModel):
    insecure: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class _ExporterCommon(StrictModel):
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "none", ""] = "gzip"
    timeout: Duration = 5.0
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig)
    sending_queue: SendingQueueConfig = Field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = Field(default_factory=RetryConfig)

    @property
    def gzip(self) -> bool:
        return self.compression == "gzip"


class OtlpGrpcExporterConfig(_ExporterCommon):
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


class OtlpHttpExporterConfig(_ExporterCommon):
    """`exporters: otlphttp:` sends OTLP/HTTP protobuf to <endpoint>/v1/<signal>."""

    endpoint: str

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return check_http_url(value)


EXPORTER_TYPES: dict[str, type[_ExporterCommon]] = {
    "otlp": OtlpGrpcExporterConfig,
    "otlphttp": OtlpHttpExporterConfig,
}


# -- extensions --------------------------------------------------------------------------
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


EXTENSION_TYPES: dict[str, type[StrictModel]] = {
    "bearertokenauth": BearerTokenAuthConfig,
}


# -- service -----------------------------------------------------------------------------
class PipelineConfig(StrictModel):
    receivers: list[str] = Field(default_factory=lambda: ["otlp"])
    processors: list[str] = Field(default_factory=list)
    exporters: list[str] = Field(min_length=1)


class OtlpMetricsPushConfig(StrictModel):
    """Push the sidecar's own metrics over OTLP (OpenTelemetry SDK) to a traces exporter's endpoint."""

    enabled: bool = False
    interval: Duration = 60.0
    # Which exporter's endpoint, headers and TLS to use; the traces pipeline's first if unset.
    exporter: str | None = None


class MetricsTelemetryConfig(StrictModel):
    address: ListenEndpoint = "127.0.0.1:8888"
    # Distinct values kept per client-controlled label (hop, workflow, tenant, ...); more -> `other`.
    max_label_values: PositiveInt = 100
    otlp: OtlpMetricsPushConfig = Field(default_factory=OtlpMetricsPushConfig)


class LogsTelemetryConfig(StrictModel):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"


class TelemetryConfig(StrictModel):
    metrics: MetricsTelemetryConfig = Field(default_factory=MetricsTelemetryConfig)
    logs: LogsTelemetryConfig = Field(default_factory=LogsTelemetryConfig)


class ServiceConfig(StrictModel):
    pipelines: dict[Literal["traces", "metrics", "logs"], PipelineConfig]
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    # How often processors that hold spans are asked to release what is due.
    tick_interval: Duration = 0.1
    # SIGTERM: stop accepting, release held spans, drain the queues for at most this long;
    # what is left is kept on disk (persistent queue) or counted as lost (memory queue).
    shutdown_grace: Duration = 10.0


# -- the whole file ----------------------------------------------------------------------
class SidecarConfig(StrictModel):
    """The validated config. Component sections are typed by the loader, keyed by full name."""

    receivers: ReceiversConfig = Field(default_factory=ReceiversConfig)
    processors: dict[str, Any] = Field(default_factory=dict)
    exporters: dict[str, Any] = Field(default_factory=dict)
    extensions: dict[str, Any] = Field(default_factory=dict)
    service: ServiceConfig

    # Filled by the loader after per-component validation.
    def typed_exporters(self) -> dict[str, _ExporterCommon]:
        return self.exporters

    def typed_processors(self) -> dict[str, StrictModel]:
        return self.processors

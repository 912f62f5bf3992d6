"""The whole config file's shape (the OpenTelemetry Collector's): sections, pipelines, telemetry.

Each component's own section is validated by its `config.py` (receivers/otlp, processors/<type>,
exporters/otlp, extensions/<name>), looked up by type in service/registry.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from costctx.config.server import ServerAuthConfig
from costctx.config.types import Duration, ListenEndpoint, StrictModel
from costctx.exporters.otlp.config import ExporterCommonConfig
from costctx.receivers.otlp.config import OtlpReceiverConfig

SIGNALS = ("traces", "metrics", "logs")


# -- receivers ---------------------------------------------------------------------------
class ReceiversConfig(StrictModel):
    otlp: OtlpReceiverConfig = Field(default_factory=OtlpReceiverConfig)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data


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
    # Token auth on this port; /healthz and /readyz stay open for the kubelet's probes.
    auth: ServerAuthConfig | None = None


class LogsTelemetryConfig(StrictModel):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"


class TelemetryConfig(StrictModel):
    metrics: MetricsTelemetryConfig = Field(default_factory=MetricsTelemetryConfig)
    logs: LogsTelemetryConfig = Field(default_factory=LogsTelemetryConfig)


class ServiceConfig(StrictModel):
    pipelines: dict[Literal["traces", "metrics", "logs"], PipelineConfig]
    # The extensions to run, by name, as in the Collector: one configured but not listed is
    # a config error (an authenticator must never be configured and silently off).
    extensions: list[str] = Field(default_factory=list)
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
    def typed_exporters(self) -> dict[str, ExporterCommonConfig]:
        return self.exporters

    def typed_processors(self) -> dict[str, StrictModel]:
        return self.processors

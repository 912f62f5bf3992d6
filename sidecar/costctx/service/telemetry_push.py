"""Optionally push the sidecar's own metrics over OTLP, for teams without Prometheus.

The OpenTelemetry SDK's MeterProvider with its OTLP metric exporter does the protocol work
(periodic export, retries, temporality). The values are the Prometheus registry's, so
/metrics and the push always agree: one observable instrument per Prometheus family
(counter -> observable counter, gauge -> observable gauge), reading the registry when the
SDK collects. Histograms are left to /metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import grpc
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from costctx.exporters.otlp.config import OtlpGrpcExporterConfig, OtlpHttpExporterConfig
from costctx.service.config.model import SidecarConfig
from costctx.transport.tls import grpc_channel_credentials

log = logging.getLogger("costctx.telemetry")

# One registry collect serves all the callbacks of one SDK collection cycle.
_CACHE_SECONDS = 1.0


def push_exporter_name(config: SidecarConfig) -> str:
    """The exporter whose endpoint receives the metrics: configured, else the traces pipeline's first."""
    chosen = config.service.telemetry.metrics.otlp.exporter
    if chosen:
        return chosen
    traces = config.service.pipelines.get("traces")
    if traces is not None:
        return traces.exporters[0]
    return next(iter(config.exporters))


def build_metric_exporter(config: OtlpGrpcExporterConfig | OtlpHttpExporterConfig) -> MetricExporter:
    """The SDK's OTLP metric exporter with the traces exporter's endpoint, headers, TLS and gzip."""
    if isinstance(config, OtlpHttpExporterConfig):
        return HttpMetricExporter(
            endpoint=f"{config.endpoint}/v1/metrics",
            headers=dict(config.headers),
            timeout=config.timeout,
            compression=HttpCompression.Gzip if config.gzip else HttpCompression.NoCompression,
            certificate_file=config.tls.ca_file,
            client_certificate_file=config.tls.cert_file,
            client_key_file=config.tls.key_file,
        )
    credentials = None
    if config.use_tls:
        credentials = grpc_channel_credentials(config.tls.ca_file, config.tls.cert_file, config.tls.key_file)
    return GrpcMetricExporter(
        endpoint=config.target,
        insecure=not config.use_tls,
        credentials=credentials,
        headers=dict(config.headers),
        timeout=config.timeout,
        compression=grpc.Compression.Gzip if config.gzip else grpc.Compression.NoCompression,
    )


class PrometheusBridge:
    """Observable instruments that read a Prometheus registry (thread-safe; called by the SDK)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._families: dict[str, Metric] = {}
        self._collected_at = float("-inf")

    def _family(self, name: str) -> Metric | None:
        with self._lock:
            now = time.monotonic()
            if now - self._collected_at > _CACHE_SECONDS:
                self._families = {f.name: f for f in self.registry.collect()}
                self._collected_at = now
            return self._families.get(name)

    def observe(self, name: str, sample_name: str) -> Iterable[Observation]:
        family = self._family(name)
        if family is None:
            return []
        return [Observation(s.value, dict(s.labels)) for s in family.samples if s.name == sample_name]

    def register(self, provider: MeterProvider) -> list[str]:
        """One instrument per counter and gauge family; returns the names registered."""
        meter = provider.get_meter("costctx")
        names = []
        for family in self.registry.collect():
            if family.type == "counter":
                create, sample = meter.create_observable_counter, f"{family.name}_total"
            elif family.type == "gauge":
                create, sample = meter.create_observable_gauge, family.name
            else:
                continue

            def callback(_: CallbackOptions, name: str = family.name, sample: str = sample) -> Iterable[Observation]:
                return self.observe(name, sample)

            create(family.name, callbacks=[callback], description=family.documentation)
            names.append(family.name)
        return names


class OtlpMetricsPush:
    def __init__(self, registry: CollectorRegistry, exporter: MetricExporter, interval: float,
                 resource: Resource | None = None) -> None:
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval * 1000)
        self.provider = MeterProvider(
            resource=resource or Resource.create({"service.name": "costctx"}), metric_readers=[self.reader]
        )
        self.instruments = PrometheusBridge(registry).register(self.provider)

    def shutdown(self) -> None:
        """Blocking: one last export, then stop (run it off the event loop)."""
        try:
            self.provider.shutdown()
        except Exception:
            log.exception("pushing the last metrics over OTLP failed")


def build_metrics_push(config: SidecarConfig, registry: CollectorRegistry) -> OtlpMetricsPush | None:
    push = config.service.telemetry.metrics.otlp
    if not push.enabled:
        return None
    name = push_exporter_name(config)
    return OtlpMetricsPush(registry, build_metric_exporter(config.exporters[name]), push.interval)

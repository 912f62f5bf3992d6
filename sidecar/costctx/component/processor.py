"""The processor contract, Collector style: configured from its own YAML section."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

from costctx.component.host import Host
from costctx.config.types import StrictModel
from costctx.pdata import TraceBatch
from costctx.telemetry.metrics import ComponentMetrics

Emit = Callable[[TraceBatch], None]

# The name before the typed host replaced the dict of services; kept so older call sites build.
ProcessorContext = Host


class Processor:
    """Subclasses set `type_name` and `config_model` and implement `process`."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[StrictModel]]

    def __init__(self, name: str, config: StrictModel, host: Host) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.log = logging.getLogger(f"costctx.processor.{name}")
        self._emit: Emit | None = None

    @property
    def context(self) -> Host:
        """The host under its former name (processor code written before the typed host)."""
        return self.host

    def component_metrics(self) -> ComponentMetrics:
        """This instance's metrics builder: families shared by every instance, labelled `processor=<name>`."""
        return self.host.component_metrics("processor", self.name)

    def bind(self, emit: Emit) -> None:
        """Where batches released later (outside `process`) continue down the pipeline."""
        self._emit = emit

    def emit(self, batch: TraceBatch) -> None:
        if self._emit is None:
            raise RuntimeError(f"processor {self.name} emitted before it was bound to a pipeline")
        self._emit(batch)

    def process(self, batch: TraceBatch) -> TraceBatch | None:
        """Return the batch to pass on; None or an empty batch stops it here (e.g. all held)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Open files, watchers or connections; called before receivers listen."""

    def tick(self, now: float) -> None:
        """Called periodically on the pipeline's loop; release whatever is due via `emit`."""

    def shutdown(self) -> None:
        """Release everything held via `emit`; called before the exporters drain."""

    async def close(self) -> None:
        """Close resources opened in `start`."""

    def grpc_handlers(self) -> list:
        """gRPC services this processor serves on the sidecar's OTLP gRPC port (e.g. budget)."""
        return []

    def http_routes(self) -> list:
        """aiohttp routes this processor serves on the sidecar's OTLP/HTTP port."""
        return []

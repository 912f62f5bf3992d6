"""The processor contract, Collector style: configured from its own YAML section."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from costctx.config.types import StrictModel
from costctx.envelope import ENVELOPE, Envelope
from costctx.pdata import TraceBatch
from costctx.survival.recorder import SurvivalRecorder
from costctx.telemetry.metrics import SidecarMetrics

Emit = Callable[[TraceBatch], None]
T = TypeVar("T")


@dataclass
class ProcessorContext:
    """What the sidecar hands each processor: shared telemetry and shared services."""

    metrics: SidecarMetrics
    survival: SurvivalRecorder
    envelope: Envelope = ENVELOPE
    # Components shared across processors and servers (e.g. a spend ledger), by name.
    services: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, build: Callable[[], T]) -> T:
        """The sidecar's one `key` service, built on first use. For a processor type's metrics:
        the registry refuses a name twice, so `inherit` and `inherit/b` must share them."""
        found = self.services.get(key)
        if found is None:
            found = self.services[key] = build()
        return found


class Processor:
    """Subclasses set `type_name` and `config_model` and implement `process`."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[StrictModel]]

    def __init__(self, name: str, config: StrictModel, context: ProcessorContext) -> None:
        self.name = name
        self.config = config
        self.context = context
        self.log = logging.getLogger(f"costctx.processor.{name}")
        self._emit: Emit | None = None

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

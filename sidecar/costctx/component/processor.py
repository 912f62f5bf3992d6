"""The processor contract, Collector style: configured from its own YAML section."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

from costctx.component.host import Host
from costctx.config.types import StrictModel
from costctx.pdata import TraceBatch
from costctx.pdata.view_batch import ViewBatch, write_back
from costctx.telemetry.metrics import ComponentMetrics

Emit = Callable[["TraceBatch | ViewBatch"], None]


def _python_codec():
    from costctx.pdata.codec.python import PythonCodec

    return PythonCodec()

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

    def emit(self, batch: TraceBatch | ViewBatch) -> None:
        if self._emit is None:
            raise RuntimeError(f"processor {self.name} emitted before it was bound to a pipeline")
        self._emit(batch)

    # Processors on the batch view set `on_view` and implement `process_view` and
    # `watched_keys`; the others implement `process` on a TraceBatch (the slow path).
    on_view: ClassVar[bool] = False
    # A processor on the view that reads spans only through columns and groups (span_column,
    # codec.groups, a few views per group), never view.spans[i] for every span, sets `columnar`:
    # the native codec makes no span view for it. For any other, its first read of the view
    # makes every span's view in one call (ViewBatch.lazy_spans), so its per-span reads index
    # a plain list (and the cost is counted in its own time).
    columnar: ClassVar[bool] = False

    def process(self, batch: TraceBatch) -> TraceBatch | None:
        """Return the batch to pass on; None or an empty batch stops it here (e.g. all held).

        A processor on the view gets this for free: its `process_view` on a view of the batch,
        the result written back into `batch` in place (for callers that hold a TraceBatch)."""
        if not self.on_view:
            raise NotImplementedError
        view_batch = ViewBatch.of_trace(_python_codec(), batch, self.watched_keys())
        result = self.process_view(view_batch)
        if result is None:
            return None
        if result is not view_batch:
            return result.trace if isinstance(result, ViewBatch) else result
        write_back(batch, view_batch)
        return batch

    def watched_keys(self) -> frozenset[str]:
        """The attribute keys `process_view` reads (as stored, before any alias is resolved)."""
        return frozenset()

    def process_view(self, batch: ViewBatch) -> ViewBatch | TraceBatch | None:
        """Read `batch.view`, add to `batch.edits`; return the batch (or None: all held)."""
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

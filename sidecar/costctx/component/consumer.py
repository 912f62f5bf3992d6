"""What receivers hand data to, and how a component refuses it (the Collector's `consumer`
package): receivers depend on these, not on the service's pipelines or on one another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from costctx.pdata import TraceBatch
from costctx.pdata.signals import Signal
from costctx.pdata.view_batch import ViewBatch

ErrorKind = Literal["invalid", "too_large", "unavailable", "unimplemented", "unauthenticated"]


class IngestError(Exception):
    """A request refused, in protocol-neutral terms; each receiver maps `kind` to its status."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


# An admission check runs before a request is accepted (memory limiter, persistent queue...).
AdmissionCheck = Callable[[Signal, int], "IngestError | None"]


class TracesConsumer(Protocol):
    def has_capacity(self) -> bool: ...

    def batch(self, raw: bytes, spans: int | None = None) -> ViewBatch:
        """A received request's bytes (and its span count) as the pipeline carries them."""
        ...

    def received(self, raw: bytes) -> ViewBatch:
        """A received request's bytes validated (the codec's CodecError if invalid) and counted."""
        ...

    def consume(self, batch: ViewBatch | TraceBatch) -> None: ...


class PassThroughConsumer(Protocol):
    """Metrics and logs: bytes forwarded as received."""

    def has_capacity(self) -> bool: ...

    def consume(self, payload: bytes, items: int) -> None: ...

"""Transport-neutral ingest: decode, admit, hand to the signal's pipeline, build the response.

Both receivers call this and translate IngestError into their protocol's status:
invalid -> INVALID_ARGUMENT / 400, too_large -> RESOURCE_EXHAUSTED / 413,
unavailable -> UNAVAILABLE + RetryInfo / 503 + Retry-After, unimplemented -> UNIMPLEMENTED / 404.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from costctx.component.consumer import AdmissionCheck, IngestError, PassThroughConsumer, TracesConsumer
from costctx.pdata.codec.api import CodecError
from costctx.pdata.signals import TRACES, EmptyResponse, Signal, count_items
from costctx.pdata.view_batch import ViewBatch
from costctx.pdata.wire_count import over_limit, python_over_limit
from costctx.receivers.otlp.metrics import ReceiverMetrics
from costctx.transport.refusal import Refused

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger("costctx.receiver")


def decode_protobuf(signal: Signal, body: bytes, max_items: int | None = None) -> Message:
    if max_items is not None and over_limit(body, max_items):
        # Counted on the wire: parsing millions of tiny items would cost hundreds of MB.
        raise IngestError("too_large", f"over {max_items} items in one request; send smaller batches")
    from google.protobuf.message import DecodeError  # metrics and logs are parsed: protobuf then

    message = signal.request_type()
    try:
        message.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise IngestError("invalid", f"cannot decode {signal.name} protobuf request: {exc}") from None
    return message


@dataclass(frozen=True)
class Route:
    """A route other than an OTLP signal on the receivers' servers (the budget check): admitted
    and counted like a signal, under its own name (admission checks read only `.name`)."""

    name: str


class Ingest:
    def __init__(
        self,
        traces: TracesConsumer | None,
        passthrough: dict[str, PassThroughConsumer],
        metrics: ReceiverMetrics,
        retry_after: float = 1.0,
        max_items: int | None = None,
    ) -> None:
        self.traces = traces
        self.passthrough = passthrough
        self.metrics = metrics
        self.retry_after = retry_after
        self.max_items = max_items
        self.admission_checks: list[AdmissionCheck] = []
        # The wire count in Rust where the traces run on the native codec (COSTCTX_CODEC=python
        # keeps the receive path in Python too).
        codec = getattr(traces, "codec", None)
        chosen = codec.name if codec is not None else os.environ.get("COSTCTX_CODEC", "").strip().lower()
        native = chosen != "python"
        self._over_limit = over_limit if native else python_over_limit

    def admit(self, signal: Signal | Route, size_bytes: int, transport: str) -> None:
        """Run the admission checks (memory limiter) BEFORE the body is decoded: under memory
        pressure a refusal must cost as little as possible. Raises the refusal."""
        for check in self.admission_checks:
            refusal = check(signal, size_bytes)
            if refusal is not None:
                self._count(signal, transport, "memory_limited" if refusal.kind == "unavailable" else refusal.kind)
                raise refusal

    def admit_route(self, route: str, size_bytes: int) -> None:
        """Admission for a non-OTLP route on the HTTP server (transport/http_body.ROUTE_ADMISSION)."""
        try:
            self.admit(Route(route), size_bytes, "http")
        except IngestError as refusal:
            raise Refused(refusal.message, refusal.retry_after or self.retry_after) from None

    def export_protobuf(self, signal: Signal, raw: bytes, transport: str) -> Message | EmptyResponse:
        """Accept a protobuf request's bytes or raise IngestError (counted here, whatever the
        reason); returns the Export*ServiceResponse. Traces are validated and counted by the
        traces pipeline's codec, which reads the bytes itself: no protobuf parse of the request
        (~45 us per 100-span request) only to count its spans and let the message go."""
        try:
            if self.max_items is not None and self._over_limit(raw, self.max_items):
                # Counted on the wire: parsing millions of tiny items would cost hundreds of MB.
                raise IngestError("too_large", f"over {self.max_items} items in one request; send smaller batches")
            if signal is not TRACES or self.traces is None:
                request = decode_protobuf(signal, raw)
            else:
                try:
                    batch = self.traces.received(raw)
                except CodecError as exc:
                    raise IngestError("invalid", f"cannot decode {signal.name} protobuf request: {exc}") from None
        except IngestError as error:
            self.record_error(signal, transport, error.kind)
            raise
        if signal is not TRACES or self.traces is None:
            return self.export(signal, request, raw, transport)
        return self._accept(signal, self.traces, batch.span_count(), transport, batch)

    def export(self, signal: Signal, request: Message, raw: bytes | None, transport: str) -> Message | EmptyResponse:
        """Accept a decoded request or raise IngestError; returns the Export*ServiceResponse."""
        pipeline = self.traces if signal is TRACES else self.passthrough.get(signal.name)
        if pipeline is None:
            self._count(signal, transport, "unimplemented")
            raise IngestError("unimplemented", f"this sidecar has no {signal.name} pipeline")
        if raw is None:
            raw = request.SerializeToString()
        items = count_items(signal, request)
        batch = pipeline.batch(raw, items) if signal is TRACES else None
        return self._accept(signal, pipeline, items, transport, batch, raw)

    def _accept(self, signal: Signal, pipeline: TracesConsumer | PassThroughConsumer, items: int, transport: str,
                batch: ViewBatch | None, raw: bytes | None = None) -> Message | EmptyResponse:
        if self.max_items is not None and items > self.max_items:
            # Before the pipeline: per item it costs far more than the item's wire bytes.
            self._count(signal, transport, "too_large")
            raise IngestError("too_large", f"{items} items in one request, over the limit of {self.max_items}; "
                                           "send smaller batches")
        if not pipeline.has_capacity():
            self._refuse(signal, transport, items, "queue_full")
            raise IngestError("unavailable", "sending queue is full; retry later", self.retry_after)
        response: Message | EmptyResponse = EmptyResponse(signal)
        started = time.perf_counter()
        if batch is not None:
            pipeline.consume(batch)
            if batch.rejected:
                response = signal.response_type()
                response.partial_success.rejected_spans = batch.rejected
                response.partial_success.error_message = batch.rejected_reason
        else:
            pipeline.consume(raw, items)
        self.metrics.accepted(signal.name, transport).record(items, time.perf_counter() - started)
        return response

    def _refuse(self, signal: Signal, transport: str, items: int, reason: str) -> None:
        self.metrics.items_refused.labels(signal.name, reason).inc(items)
        self._count(signal, transport, reason)

    def _count(self, signal: Signal | Route, transport: str, result: str) -> None:
        self.metrics.request_counter(signal.name, transport, result).inc()

    def record_error(self, signal: Signal, transport: str, kind: str) -> None:
        """Requests that failed before ingest (undecodable, oversize) are counted too."""
        self._count(signal, transport, kind)

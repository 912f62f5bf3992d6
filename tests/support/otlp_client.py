"""A plain OTLP/gRPC client that keeps exact books: which spans the sidecar acknowledged.

The SDK exporters give up after their own timeout and say nothing of which spans were
acknowledged; reliability tests need that ledger, so this client sends uniquely named spans
over the OTLP TraceService and retries retryable refusals as an OTLP client must.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def trace_request(names: list[str], service: str = "reliability", pad: int = 0) -> bytes:
    """An ExportTraceServiceRequest with one span per name (`pad` bytes of attribute each)."""
    spans = []
    now = time.time_ns()
    for name in names:
        span = trace_pb2.Span(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
        if pad:
            span.attributes.append(common_pb2.KeyValue(key="pad", value=common_pb2.AnyValue(string_value="x" * pad)))
        spans.append(span)
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(
        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
    )
    rs.scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


@dataclass
class Ledger:
    acknowledged: set[str] = field(default_factory=set)
    refusals: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refused(self, code: str) -> None:
        with self.lock:
            self.refusals[code] = self.refusals.get(code, 0) + 1


# A resend after a missed deadline is a second copy of a batch the sidecar may have taken, which
# the tests' exact counts (accepted items, failed batches = the ledger's) do not allow for: the
# deadline is for a sidecar that stopped answering, not one a loaded machine made slow.
EXPORT_DEADLINE = 20.0


class SpanStreamer:
    """Sends batches of `batch_size` uniquely named spans on a thread until stopped."""

    def __init__(
        self,
        target: str,
        prefix: str,
        batch_size: int = 20,
        interval: float = 0.02,
        pad: int = 0,
        metadata: tuple = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.target = target
        self.prefix = prefix
        self.batch_size = batch_size
        self.interval = interval
        self.pad = pad
        self.metadata = metadata
        self.credentials = credentials
        self.ledger = Ledger()
        self.sent_batches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"streamer-{prefix}")
        self._counter = itertools.count()

    def start(self) -> SpanStreamer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> Ledger:
        self._stop.set()
        self._thread.join(timeout)
        return self.ledger

    def _channel(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials)
        return grpc.insecure_channel(self.target)

    def _run(self) -> None:
        channel = self._channel()
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        while not self._stop.is_set():
            names = [f"{self.prefix}-{next(self._counter)}" for _ in range(self.batch_size)]
            payload = trace_request(names, pad=self.pad)
            # Retry this batch until acknowledged or the streamer is stopped: what a client does.
            while True:
                try:
                    export(payload, timeout=EXPORT_DEADLINE, metadata=self.metadata)
                except grpc.RpcError as exc:
                    code = exc.code()
                    self.ledger.refused(code.name)
                    if code not in RETRYABLE and code != grpc.StatusCode.DEADLINE_EXCEEDED:
                        self.ledger.errors.append(f"{code.name}: {exc.details()}")
                    if self._stop.wait(0.05):
                        break
                    continue
                with self.ledger.lock:
                    self.ledger.acknowledged.update(names)
                self.sent_batches += 1
                break
            if self._stop.wait(self.interval):
                break
        channel.close()

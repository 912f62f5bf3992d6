"""An in-process OTLP sink: a real OTLP gRPC (and optional HTTP) server that records what it gets.

The demo uses it as the sidecar's downstream; the tests use it as the collector. It can be
told to refuse requests, to play a downstream that is down.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.attributes import any_value_to_python
from costctx.pdata.signals import SIGNALS, Signal


@dataclass
class SinkSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))


def flatten_spans(requests: list[ExportTraceServiceRequest]) -> list[SinkSpan]:
    out = []
    for request in requests:
        for rs in request.resource_spans:
            resource = {kv.key: any_value_to_python(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append(
                        SinkSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={kv.key: any_value_to_python(kv.value) for kv in span.attributes},
                            resource=resource,
                            scope=ss.scope.name,
                            events=[
                                (e.name, {kv.key: any_value_to_python(kv.value) for kv in e.attributes})
                                for e in span.events
                            ],
                            links=[
                                (
                                    link.trace_id.hex(),
                                    link.span_id.hex(),
                                    {kv.key: any_value_to_python(kv.value) for kv in link.attributes},
                                )
                                for link in span.links
                            ],
                            start_time_unix_nano=span.start_time_unix_nano,
                            end_time_unix_nano=span.end_time_unix_nano,
                        )
                    )
    return out


class OtlpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int | None = None,
        on_request: Callable[[Signal, Message], None] | None = None,
        http_host: str | None = None,
        max_request_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.http_host = http_host or host
        # Called with each request recorded, outside the lock (`costctx sink` prints them).
        self.on_request = on_request
        # A downstream's receive limit: gRPC answers RESOURCE_EXHAUSTED above it, HTTP 413.
        self.max_request_bytes = max_request_bytes
        self._grpc_port_wanted = grpc_port
        self._http_port_wanted = http_port
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._lock = threading.Condition()
        self.requests: dict[str, list[Message]] = {name: [] for name in SIGNALS}
        self.raw: dict[str, list[bytes]] = {name: [] for name in SIGNALS}
        self._refuse_remaining = 0
        self._refuse_code = grpc.StatusCode.UNAVAILABLE
        self._server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    # -- control ---------------------------------------------------------------------------
    def refuse(self, count: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Answer the next `count` requests with `code` (UNAVAILABLE: a downstream that is down)."""
        with self._lock:
            self._refuse_remaining = count
            self._refuse_code = code

    def _take_refusal(self) -> grpc.StatusCode | None:
        with self._lock:
            if self._refuse_remaining > 0:
                self._refuse_remaining -= 1
                return self._refuse_code
        return None

    def _record(self, signal: Signal, body: bytes) -> Message:
        message = signal.request_type()
        message.ParseFromString(body)
        with self._lock:
            self.requests[signal.name].append(message)
            self.raw[signal.name].append(body)
            self._lock.notify_all()
        if self.on_request is not None:
            self.on_request(signal, message)
        return message

    # -- reading ---------------------------------------------------------------------------
    def spans(self) -> list[SinkSpan]:
        with self._lock:
            requests = list(self.requests["traces"])
        return flatten_spans(requests)

    def span_count(self) -> int:
        with self._lock:
            return sum(
                len(ss.spans) for r in self.requests["traces"] for rs in r.resource_spans for ss in rs.scope_spans
            )

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                have = sum(
                    len(ss.spans) for r in self.requests["traces"] for rs in r.resource_spans for ss in rs.scope_spans
                )
                if have >= count:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)

    def wait_for_requests(self, signal: str, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests[signal]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    # -- servers ---------------------------------------------------------------------------
    def _grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for signal in SIGNALS.values():

            def export(request: bytes, context: grpc.ServicerContext, signal: Signal = signal) -> bytes:
                code = self._take_refusal()
                if code is not None:
                    context.abort(code, "sink refusing on purpose")
                self._record(signal, request)
                return signal.response_type().SerializeToString()

            method = grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)
            handlers.append(grpc.method_handlers_generic_handler(signal.service, {"Export": method}))
        return handlers

    def start(self) -> OtlpSink:
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            handlers=self._grpc_handlers(),
            options=[("grpc.max_receive_message_length", self.max_request_bytes)],
        )
        self.grpc_port = self._server.add_insecure_port(f"{self.host}:{self._grpc_port_wanted}")
        self._server.start()
        if self._http_port_wanted is not None:
            self._start_http()
        return self

    def _start_http(self) -> None:
        sink = self
        paths = {s.http_path: s for s in SIGNALS.values()}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                signal = paths.get(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if signal is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if len(body) > sink.max_request_bytes:
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if sink._take_refusal() is not None:
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                sink._record(signal, body)
                payload = signal.response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._http = ThreadingHTTPServer((self.http_host, self._http_port_wanted or 0), Handler)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True, name="sink-http").start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

"""Send serialized OTLP requests over gRPC, classifying failures by the OTLP retry rules.

Large requests are sent from worker threads (grpc's blocking client, which releases the GIL
while it copies, writes and waits), small ones with grpc.aio on the event loop. A merged request
of the bench's settings is ~2 MB: grpc.aio's client copied it into a fresh mapping on the loop
thread (the sidecar fixes glibc's mmap threshold at 128 KiB: ~1,000 page faults), ~2 ms of the
loop's CPU per send; from a thread the loop pays ~0.1 ms. A small request costs the process
~35 us more on a thread (the hand-over) than on the loop: it stays there (bench/send_cost.py).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

import grpc

from costctx.exporters.exporterhelper.errors import PermanentSendError, RetryableSendError, TooLargeSendError
from costctx.exporters.exporterhelper.parts import Parts, joined
from costctx.exporters.otlp.config import OtlpGrpcExporterConfig
from costctx.pdata.signals import EmptyResponse, Signal
from costctx.transport.tls import grpc_channel_credentials

if TYPE_CHECKING:
    from google.protobuf.message import Message

# OTLP spec: retryable gRPC codes. RESOURCE_EXHAUSTED only when the server sent RetryInfo.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def retry_delay_from_metadata(metadata) -> float | None:
    """The RetryInfo delay in a `grpc-status-details-bin` trailer, if the server sent one."""
    for key, value in metadata or ():
        if key != "grpc-status-details-bin":
            continue
        from google.rpc import error_details_pb2, status_pb2  # only with details: not at start-up

        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed trailer is no hint, not a failure
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


# RESOURCE_EXHAUSTED without RetryInfo is a size refusal when its message says so (grpc-go and
# grpcio: "received message larger than max (N vs. M)"; others name the size or length).
_SIZE_WORDS = ("larger than max", "too large", "message size", "message length", "exceeds")


def is_size_refusal(details: str | None) -> bool:
    text = (details or "").lower()
    return any(word in text for word in _SIZE_WORDS)


# Requests of at least this many bytes are sent from a worker thread: above glibc's mmap
# threshold as the sidecar fixes it (service/malloc_tuning.py) grpc's copy is a fresh mapping.
OFF_LOOP_BYTES = 128 * 1024


class GrpcSender:
    # A merged request may come as its Parts: joined on the thread that sends it (parts.py).
    joins_parts = True

    def __init__(self, config: OtlpGrpcExporterConfig) -> None:
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        # Large requests: grpc's blocking client on worker threads (its own connection).
        self._blocking_channel: grpc.Channel | None = None
        self._blocking_calls: dict[str, grpc.UnaryUnaryMultiCallable] = {}
        self._threads: ThreadPoolExecutor | None = None
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        self.description = f"grpc://{config.target}"

    async def start(self) -> None:
        cfg = self._config
        options = [
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        compression = grpc.Compression.Gzip if cfg.gzip else grpc.Compression.NoCompression
        # Channels connect on their first call: a sidecar sending only small (or only large)
        # requests opens one connection.
        if cfg.use_tls:
            credentials = grpc_channel_credentials(cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file)
            self._channel = grpc.aio.secure_channel(cfg.target, credentials, options, compression)
            self._blocking_channel = grpc.secure_channel(cfg.target, credentials, options, compression)
        else:
            self._channel = grpc.aio.insecure_channel(cfg.target, options, compression)
            self._blocking_channel = grpc.insecure_channel(cfg.target, options, compression)
        # A thread per consumer at most (started as needed): as many large sends in flight as before.
        self._threads = ThreadPoolExecutor(cfg.sending_queue.num_consumers, thread_name_prefix="costctx-send")

    def _call(self, signal: Signal) -> grpc.aio.UnaryUnaryMultiCallable:
        call = self._calls.get(signal.name)
        if call is None:
            assert self._channel is not None, "sender not started"
            call = self._calls[signal.name] = _unary(self._channel, signal)
        return call

    def _blocking_call(self, signal: Signal) -> grpc.UnaryUnaryMultiCallable:
        call = self._blocking_calls.get(signal.name)
        if call is None:
            assert self._blocking_channel is not None, "sender not started"
            call = self._blocking_calls[signal.name] = _unary(self._blocking_channel, signal)
        return call

    async def send(self, signal: Signal, payload: bytes | Parts) -> Message | EmptyResponse:
        try:
            size = payload.size() if isinstance(payload, Parts) else len(payload)
            if size < OFF_LOOP_BYTES:
                return await self._call(signal)(joined(payload), timeout=self._config.timeout, metadata=self._metadata)
            call = partial(_send_joined, self._blocking_call(signal), payload, timeout=self._config.timeout,
                           metadata=self._metadata)
            return await asyncio.get_running_loop().run_in_executor(self._threads, call)
        except grpc.RpcError as exc:  # grpc.aio's AioRpcError is one too: the same code, details, trailers
            code = exc.code()
            message = f"{code.name}: {exc.details()}"
            delay = retry_delay_from_metadata(exc.trailing_metadata())
            if code in RETRYABLE_CODES or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None):
                raise RetryableSendError(code.name.lower(), message, delay) from None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and is_size_refusal(exc.details()):
                raise TooLargeSendError("too_large", message) from None
            raise PermanentSendError(code.name.lower(), message) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self._blocking_channel is not None:
            self._blocking_channel.close()  # ends the sends still in flight (CANCELLED) without waiting
            self._blocking_channel = None
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None


def _send_joined(call: grpc.UnaryUnaryMultiCallable, payload: bytes | Parts, **kwargs):
    """On a worker thread: join a merged request (without the GIL from 1 MiB) and send it; the
    joined block is freed here too, once gRPC has its copy."""
    return call(joined(payload), **kwargs)


def _unary(channel: grpc.Channel | grpc.aio.Channel, signal: Signal):
    # No request serializer: the payload is already serialized OTLP bytes.
    # An empty answer (nearly all) is not parsed: no protobuf on the native codec's path.
    return channel.unary_unary(signal.grpc_method, request_serializer=None,
                               response_deserializer=signal.parse_response)

"""Send serialized OTLP requests over HTTP (protobuf), per the OTLP/HTTP retry rules."""

from __future__ import annotations

import contextlib
import gzip
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from google.protobuf.message import DecodeError, Message

from costctx.exporters.exporterhelper.errors import PermanentSendError, RetryableSendError, TooLargeSendError
from costctx.exporters.otlp.config import OtlpHttpExporterConfig
from costctx.pdata.signals import Signal

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


class HttpSender:
    def __init__(self, config: OtlpHttpExporterConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self.description = config.endpoint

    async def start(self) -> None:
        cfg = self._config
        ssl_context: ssl.SSLContext | bool = False
        if cfg.endpoint.startswith("https://"):
            ssl_context = ssl.create_default_context(cafile=cfg.tls.ca_file)
            if cfg.tls.cert_file:
                ssl_context.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=cfg.timeout),
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=cfg.sending_queue.num_consumers),
        )

    async def send(self, signal: Signal, payload: bytes) -> Message:
        assert self._session is not None, "sender not started"
        cfg = self._config
        headers = {"Content-Type": "application/x-protobuf", **cfg.headers}
        body = payload
        if cfg.gzip:
            body = gzip.compress(payload, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(cfg.endpoint + signal.http_path, data=body, headers=headers) as resp:
                data = await resp.read()
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RetryableSendError("connection", f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            response = signal.response_type()
            # A success with an unreadable body reports nothing rejected.
            with contextlib.suppress(DecodeError):
                response.ParseFromString(data)
            return response
        message = f"HTTP {status}: {data[:200]!r}"
        if status == 413:  # Content Too Large: smaller requests may pass
            raise TooLargeSendError("too_large", message)
        if status in RETRYABLE_STATUS:
            raise RetryableSendError(f"http_{status}", message, retry_after)
        raise PermanentSendError(f"http_{status}", message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

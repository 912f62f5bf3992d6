"""OTLP/HTTP receiver: POST /v1/traces, /v1/metrics, /v1/logs, protobuf or JSON, gzip.

Errors carry a google.rpc.Status body in the request's encoding; 503 carries Retry-After.
Bodies are read with transport/http_body.read_body: gzip and deflate are inflated in bounded
steps with the size limit and the admission checks applied as the body grows, so a small
gzip bomb gets 413 (or 503 under memory pressure) without ever being inflated whole.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from aiohttp import web

from costctx.config.server import HttpProtocolConfig
from costctx.pdata.signals import SIGNALS, EmptyResponse, Signal
from costctx.receivers.otlp.ingest import Ingest, IngestError
from costctx.transport.http_body import BodyError, read_body
from costctx.transport.http_errors import JSON, PROTOBUF, status_response
from costctx.transport.rpc_status import (
    INVALID_ARGUMENT,
    RESOURCE_EXHAUSTED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNIMPLEMENTED,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger("costctx.receiver")

MAX_BODY = web.AppKey("max_body", int)

_HTTP_STATUS = {"invalid": 400, "too_large": 413, "unavailable": 503, "unimplemented": 404, "unauthenticated": 401}
_RPC_CODE = {
    "invalid": INVALID_ARGUMENT,
    "too_large": RESOURCE_EXHAUSTED,
    "unavailable": UNAVAILABLE,
    "unimplemented": UNIMPLEMENTED,
    "unauthenticated": UNAUTHENTICATED,
}


def _encode(message: Message | EmptyResponse, content_type: str) -> bytes:
    if content_type == JSON:
        from costctx.receivers.otlp.json_codec import encode_json  # JSON only: it imports protobuf

        return encode_json(message)
    return message.SerializeToString()


def error_response(error: IngestError, content_type: str) -> web.Response:
    """Called only once the content type is protobuf or JSON (else 415)."""
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return status_response(_HTTP_STATUS[error.kind], _RPC_CODE[error.kind], error.message, content_type, headers)


def _export_handler(ingest: Ingest, signal: Signal):
    async def export(request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type not in (PROTOBUF, JSON):
            return web.Response(status=415, text=f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}")
        try:
            # Before the body is read: a refusal under memory pressure should cost nothing.
            ingest.admit(signal, request.content_length or 0, "http")
        except IngestError as error:
            return error_response(error, content_type)
        # Admitted at its Content-Length; what inflating adds beyond that is admitted as it
        # streams, before it is decoded (a gzip bomb is refused as it grows, not after).
        unadmitted = request.content_length or 0

        def admit_more(size: int) -> None:
            nonlocal unadmitted
            unadmitted -= size
            if unadmitted < 0:
                ingest.admit(signal, -unadmitted, "http")
                unadmitted = 0

        try:
            body = await read_body(request, request.app[MAX_BODY], admit_more)
        except BodyError as error:
            # The client's fault and cheap to repeat: counted, and logged at debug only, so no
            # client can fill the log.
            log.debug("OTLP/HTTP %s: unreadable body (%s): %s", signal.name, error.kind, error.message)
            ingest.record_error(signal, "http", "too_large" if error.kind == "too_large" else "invalid")
            if error.kind == "unsupported":
                return status_response(415, INVALID_ARGUMENT, error.message, content_type)
            return error_response(IngestError(error.kind, error.message), content_type)
        except IngestError as error:
            return error_response(error, content_type)
        try:
            if content_type == JSON:
                from costctx.receivers.otlp.json_codec import decode_json  # JSON only: it imports protobuf

                message = decode_json(signal, body)
        except IngestError as error:  # undecodable, or too many objects to decode
            ingest.record_error(signal, "http", error.kind)
            return error_response(error, content_type)
        try:
            if content_type == JSON:
                response = ingest.export(signal, message, None, "http")
            else:  # the raw bytes: traces are read by the pipeline's codec, the rest decoded by ingest
                response = ingest.export_protobuf(signal, body, "http")
        except IngestError as error:  # counted by ingest
            return error_response(error, content_type)
        return web.Response(status=200, body=_encode(response, content_type), content_type=content_type)

    return export


def build_otlp_http_app(ingest: Ingest, config: HttpProtocolConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_request_body_size)
    # Served with aiohttp's auto_decompress off (HttpServerHost): read_body inflates, bounded.
    app[MAX_BODY] = config.max_request_body_size
    for signal in SIGNALS.values():
        app.router.add_post(signal.http_path, _export_handler(ingest, signal))
    return app

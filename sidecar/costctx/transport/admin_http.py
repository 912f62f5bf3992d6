"""The telemetry (admin) port's HTTP/1.1 server: GET and HEAD of fixed paths, on asyncio streams.

Why not aiohttp: importing it costs ~9 MB of RSS, an eighth of the sidecar at start-up, and the
admin port only answers a few read-only routes (/metrics, /healthz, /readyz, /survival, the
status page). aiohttp is imported only where an OTLP/HTTP receiver or exporter is configured.
HTTP/1.1 itself (parsing, framing, keep-alive, chunked bodies) is h11's: this module routes and
bounds.

Bounds: a request head of at most MAX_HEADERS lines, refused once more than MAX_HEAD bytes of it
are buffered incomplete (h11's bound, checked per read of READ_SIZE), a body (read past: no
route reads one) of at most MAX_BODY bytes, at most MAX_CONNECTIONS connections, each closed
after IDLE_TIMEOUT without a request. A request h11 cannot parse, or past a bound, gets its
status (400, 413, 431, 505) and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

import h11

from costctx.transport.listen import listening_socket

log = logging.getLogger("costctx.admin")

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_BODY = 64 * 1024
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 30.0
READ_SIZE = 16 * 1024
METHODS = ("GET", "HEAD")


@dataclass
class AdminRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased; the last of repeated ones

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass
class AdminResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[AdminRequest], AdminResponse]
# Runs before every route's handler: a response refuses the request (bearer-token auth).
Guard = Callable[[AdminRequest], "AdminResponse | None"]


class Refuse(Exception):
    """The request cannot be served and the connection is not trusted further."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminServer:
    def __init__(self, endpoint: str, name: str = "telemetry") -> None:
        self.endpoint = endpoint
        self.name = name
        self.port: int | None = None
        self._handlers: dict[str, Handler] = {}
        self.guards: list[Guard] = []
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def add_get(self, path: str, handler: Handler) -> None:
        self._handlers[path] = handler

    def routes(self) -> list[tuple[str, str]]:
        """(method, path) of every route, HEAD included."""
        return sorted((method, path) for path in self._handlers for method in METHODS)

    async def start(self) -> None:
        sock = listening_socket(self.endpoint, self.name, backlog=128)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    def answer(self, request: AdminRequest) -> AdminResponse:
        """The response to a parsed request: routing, method, guards, then the handler."""
        handler = self._handlers.get(request.path)
        if handler is None:
            return text_response(404, "404: Not Found")
        if request.method not in METHODS:
            return text_response(405, "405: Method Not Allowed", {"Allow": ", ".join(METHODS)})
        for guard in self.guards:
            refused = guard(request)
            if refused is not None:
                return refused
        try:
            return handler(request)
        except Exception:
            log.exception("%s: %s %s failed", self.name, request.method, request.path)
            return text_response(500, "500: Internal Server Error")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while True:
                try:
                    request = await _next_request(connection, reader)
                    if request is None:
                        return
                    await _read_past_body(connection, reader, request.headers)
                except Refuse as exc:
                    await _refuse(connection, writer, exc)
                    return
                await _send(connection, writer, self.answer(request), request.method == "HEAD")
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return  # h11 decided the connection closes (HTTP/1.0, Connection: close)
                connection.start_next_cycle()
        except (TimeoutError, ConnectionError, h11.LocalProtocolError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()


async def _next_event(connection: h11.Connection, reader: asyncio.StreamReader):
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            status = 431 if "incomplete event" in str(exc) else exc.error_status_hint
            raise Refuse(status, str(exc)) from None
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT))


async def _next_request(connection: h11.Connection, reader: asyncio.StreamReader) -> AdminRequest | None:
    """The next request's head, or None once the client closed between requests."""
    try:
        event = await _next_event(connection, reader)
    except TimeoutError:
        return None
    if isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request)
    if not event.http_version.startswith(b"1."):
        raise Refuse(505, "HTTP/1.x only")
    if len(event.headers) > MAX_HEADERS:
        raise Refuse(431, "too many header lines")
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
    target = event.target.decode("latin-1")
    return AdminRequest(event.method.decode("latin-1"), urlsplit(target).path if target.startswith("/") else "",
                        headers)


async def _read_past_body(connection: h11.Connection, reader: asyncio.StreamReader,
                          headers: Mapping[str, str]) -> None:
    """No route reads a body; one within MAX_BODY is read past so the connection stays usable."""
    seen = 0
    if int(headers.get("content-length", "0")) > MAX_BODY:  # h11 has checked it is a number
        raise Refuse(413, "request body too large")
    while True:
        event = await _next_event(connection, reader)
        if isinstance(event, h11.EndOfMessage):
            return
        if isinstance(event, h11.Data):
            seen += len(event.data)
            if seen > MAX_BODY:
                raise Refuse(413, "request body too large")


async def _send(connection: h11.Connection, writer: asyncio.StreamWriter, response: AdminResponse,
                head_only: bool) -> None:
    headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
    headers += list(response.headers.items())
    writer.write(connection.send(h11.Response(status_code=response.status, headers=headers,
                                              reason=_reason(response.status))))
    if not head_only and response.body:
        writer.write(connection.send(h11.Data(data=response.body)))
    writer.write(connection.send(h11.EndOfMessage()))
    await writer.drain()


async def _refuse(connection: h11.Connection, writer: asyncio.StreamWriter, refusal: Refuse) -> None:
    body = f"{refusal.status}: {refusal}".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
               ("Connection", "close")]
    try:
        head = connection.send(h11.Response(status_code=refusal.status, headers=headers,
                                            reason=_reason(refusal.status)))
    except h11.LocalProtocolError:  # h11 will not answer a request line it could not parse
        head = f"HTTP/1.1 {refusal.status} {_reason(refusal.status)}\r\n".encode() + b"".join(
            f"{name}: {value}\r\n".encode() for name, value in headers) + b"\r\n"
    writer.write(head + body)
    await writer.drain()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> AdminResponse:
    return AdminResponse(status, text.encode(), headers=headers or {})

"""The telemetry (admin) port's HTTP/1.1 server, on asyncio streams: GET and HEAD of fixed paths.

Why not aiohttp: importing it costs ~9 MB of RSS, an eighth of the sidecar at start-up, and the
admin port only answers a few read-only routes (/metrics, /healthz, /readyz, /survival, the
status page). aiohttp is imported only where an OTLP/HTTP receiver or exporter is configured.

What it accepts, bounded: a request line and headers of at most MAX_HEAD bytes and MAX_HEADERS
lines, a body (ignored: no route reads one) of at most MAX_BODY bytes by Content-Length, at most
MAX_CONNECTIONS connections, each closed after IDLE_TIMEOUT without a request. Anything else gets
its status (400, 404, 405, 413, 431, 501, 503) and, where the stream cannot be trusted further,
the connection closed. Keep-alive as HTTP/1.1 defines it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from costctx.config.types import split_host_port

log = logging.getLogger("costctx.admin")

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_BODY = 64 * 1024
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 30.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}
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


class BadHead(Exception):
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
        host, port = split_host_port(self.endpoint)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen for {self.name} on {self.endpoint}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=MAX_HEAD)

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
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        await _write(writer, text_response(400, "400: incomplete request"), False, True)
                    return
                except asyncio.LimitOverrunError:
                    await _write(writer, text_response(431, "431: request head too large"), False, True)
                    return
                except (TimeoutError, ConnectionError):
                    return
                try:
                    request, keep_alive, length = parse_head(head)
                except BadHead as exc:
                    await _write(writer, text_response(exc.status, f"{exc.status}: {exc}"), False, True)
                    return
                if length:
                    await asyncio.wait_for(reader.readexactly(length), IDLE_TIMEOUT)  # read past, unused
                await _write(writer, self.answer(request), request.method == "HEAD", not keep_alive)
                if not keep_alive:
                    return
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()


def parse_head(head: bytes) -> tuple[AdminRequest, bool, int]:
    """-> (the request, whether the connection stays open after it, the body's length to skip)."""
    lines = head.decode("latin-1")[:-4].split("\r\n")  # latin-1: any byte decodes
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadHead(400, "malformed request line")
    method, target, version = parts
    if not method.isalpha() or not method.isupper():
        raise BadHead(400, "malformed method")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadHead(431, "too many header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise BadHead(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise BadHead(501, "no route here takes a body: chunked bodies are not read")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or not length_text.isascii():
        raise BadHead(400, "malformed Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise BadHead(413, "request body too large")
    path = urlsplit(target).path if target.startswith("/") else ""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return AdminRequest(method, path, headers), keep_alive, length


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> AdminResponse:
    return AdminResponse(status, text.encode(), headers=headers or {})


async def _write(writer: asyncio.StreamWriter, response: AdminResponse, head_only: bool, close: bool) -> None:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
             f"Content-Type: {response.content_type}", f"Content-Length: {len(response.body)}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    if close:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(response.body)
    await writer.drain()

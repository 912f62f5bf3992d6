"""An aiohttp server bound to a configured endpoint (port 0 picks a free port, for tests)."""

from __future__ import annotations

import ssl

from aiohttp import web

from costctx.transport.listen import listening_socket


class HttpServerHost:
    def __init__(self, endpoint: str, app: web.Application, name: str, auto_decompress: bool = False) -> None:
        self.endpoint = endpoint
        # Off by default: aiohttp would inflate each chunk whole before any size check (a
        # gzip bomb); routes read bodies with transport/http_body.read_body, which is bounded.
        self.auto_decompress = auto_decompress
        self.app = app
        self.name = name
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.ssl_context: ssl.SSLContext | None = None

    async def start(self) -> None:
        sock = listening_socket(self.endpoint, self.name, backlog=1024)
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, auto_decompress=self.auto_decompress
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

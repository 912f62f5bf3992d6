"""The sidecar's gRPC server: the OTLP services and the ones processors provide (the budget
check) share one port, its TLS and its auth interceptors."""

from __future__ import annotations

import grpc

from costctx.config.server import GrpcProtocolConfig, MiB


class GrpcServerHost:
    def __init__(self, config: GrpcProtocolConfig) -> None:
        self.config = config
        self._handlers: list[grpc.GenericRpcHandler] = []
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        # Set from the receiver's `tls` block (Sidecar._secure_servers); None: plaintext.
        self.credentials: grpc.ServerCredentials | None = None
        # Set by auth: interceptors run for every method on this server, whoever registered it.
        self.interceptors: list[grpc.aio.ServerInterceptor] = []

    def add_handlers(self, handlers: list[grpc.GenericRpcHandler]) -> None:
        if self._server is not None:
            raise RuntimeError("add gRPC handlers before the server starts")
        self._handlers.extend(handlers)

    async def start(self) -> None:
        limit = self.config.max_recv_msg_size_mib * MiB
        self._server = grpc.aio.server(
            handlers=self._handlers,
            interceptors=self.interceptors,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        if self.credentials is not None:
            self.port = self._server.add_secure_port(self.config.endpoint, self.credentials)
        else:
            self.port = self._server.add_insecure_port(self.config.endpoint)
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {self.config.endpoint}")
        await self._server.start()

    async def stop(self, grace: float) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

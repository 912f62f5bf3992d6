"""Server settings of the OTLP protocols (the Collector's configgrpc / confighttp server names),
shared by the OTLP receiver and the transport hosts that serve them."""

from __future__ import annotations

from pydantic import PositiveInt

from costctx.config.tls import TlsServerConfig
from costctx.config.types import ListenEndpoint, StrictModel

MiB = 1024 * 1024


class ServerAuthConfig(StrictModel):
    """`auth: {authenticator: bearertokenauth/otlp}` on a server, as in the Collector: the
    extension (configured and listed in service.extensions) that checks its requests."""

    authenticator: str


class GrpcProtocolConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4317"
    # The Collector's default. A request costs several times its size while decoded, and the
    # pod is limited to 256 MiB: 64 MiB let one request reach 420 MiB.
    max_recv_msg_size_mib: PositiveInt = 4
    tls: TlsServerConfig | None = None
    auth: ServerAuthConfig | None = None


class HttpProtocolConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4318"
    # After decompression. As gRPC's 4 MiB, for the same reason (see README, "Request size").
    max_request_body_size: PositiveInt = 4 * MiB
    tls: TlsServerConfig | None = None
    auth: ServerAuthConfig | None = None

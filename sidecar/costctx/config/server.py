"""Server settings of the OTLP protocols (the Collector's configgrpc / confighttp server names),
shared by the OTLP receiver and the transport hosts that serve them."""

from __future__ import annotations

from pydantic import PositiveInt

from costctx.config.tls import TlsServerConfig
from costctx.config.types import ListenEndpoint, StrictModel

MiB = 1024 * 1024


class GrpcProtocolConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4317"
    max_recv_msg_size_mib: PositiveInt = 64
    tls: TlsServerConfig | None = None


class HttpProtocolConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4318"
    max_request_body_size: PositiveInt = 64 * MiB
    tls: TlsServerConfig | None = None

"""TLS and mutual TLS: server side for the gRPC and HTTP receivers (from the same config block),
client side for the gRPC channels the sidecar and its budget client open."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from costctx.config.tls import TlsServerConfig


def grpc_server_credentials(config: TlsServerConfig) -> grpc.ServerCredentials:
    key = Path(config.key_file).read_bytes()
    cert = Path(config.cert_file).read_bytes()
    client_ca = Path(config.client_ca_file).read_bytes() if config.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def grpc_channel_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS for a gRPC client: `ca_file` to trust (system roots if None), `cert_file` and
    `key_file` for mutual TLS."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file), private_key=_read(key_file), certificate_chain=_read(cert_file)
    )


def http_ssl_context(config: TlsServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.cert_file, config.key_file)
    if config.client_ca_file:
        context.load_verify_locations(cafile=config.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context

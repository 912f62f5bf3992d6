"""TLS settings (the Collector's configtls names), shared by receivers, exporters and transport."""

from __future__ import annotations

from costctx.config.types import StrictModel


class TlsServerConfig(StrictModel):
    """TLS on a receiver (Collector names). `client_ca_file` turns on mutual TLS: clients must
    present a certificate signed by that CA."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class TlsClientConfig(StrictModel):
    insecure: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

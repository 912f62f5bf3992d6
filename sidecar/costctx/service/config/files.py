"""Files a config names that the sidecar reads when it starts: bearer-token files and TLS
certificates and keys. `costctx validate` reads them as `costctx run` will, so the two agree
(a config that validates does not then fail to start over a missing or unreadable file)."""

from __future__ import annotations

import ssl
from pathlib import Path

from costctx.extensions.bearertokenauth.tokens import BearerTokens, TokenError
from costctx.service.config.model import SidecarConfig
from costctx.transport.tls import http_ssl_context


def _unreadable(path: str) -> str | None:
    try:
        Path(path).read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    return None


def referenced_file_problems(config: SidecarConfig) -> list[str]:
    """Each problem as `<key>: <reason>`; empty when every named file loads."""
    problems: list[str] = []
    for name, section in config.extensions.items():
        if name.split("/", 1)[0] == "bearertokenauth" and section.filename is not None:
            try:
                BearerTokens(section)
            except TokenError as exc:
                problems.append(f"extensions.{name}.filename: {exc}")
    protocols = config.receivers.otlp.protocols
    for protocol_name, protocol in (("grpc", protocols.grpc), ("http", protocols.http)):
        if protocol is None or protocol.tls is None:
            continue
        where = f"receivers.otlp.protocols.{protocol_name}.tls"
        unreadable = [(key, _unreadable(path)) for key in ("cert_file", "key_file", "client_ca_file")
                      if (path := getattr(protocol.tls, key))]
        problems.extend(f"{where}.{key}: {reason}" for key, reason in unreadable if reason)
        if not any(reason for _, reason in unreadable):
            try:
                http_ssl_context(protocol.tls)  # the certificate, its key and the CA, parsed for real
            except ssl.SSLError as exc:
                problems.append(f"{where}: {exc.reason or exc}")
    for name, exporter in config.exporters.items():
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(exporter.tls, key)
            if path and (reason := _unreadable(path)):
                problems.append(f"exporters.{name}.tls.{key}: {reason}")
    return problems

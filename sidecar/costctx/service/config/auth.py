"""Which authenticator checks which server, and the config rules that keep auth from failing open.

Rules (checked by `check_auth`, applied by `server_authenticators`):
- every configured extension is listed in service.extensions, and every listed one is
  configured: an authenticator is never configured and silently off;
- a server's `auth.authenticator` names an extension that is configured and listed;
- an authenticator that no server names covers every server that names none. This keeps the
  original form (one `bearertokenauth` guarding everything) working; two such are ambiguous.
"""

from __future__ import annotations

from costctx.service.config.model import SidecarConfig

# Servers that can carry `auth`, by the config path that names their authenticator.
GRPC = "receivers.otlp.protocols.grpc"
HTTP = "receivers.otlp.protocols.http"
ADMIN = "service.telemetry.metrics"


class AuthConfigError(ValueError):
    """A config whose auth would fail open or is ambiguous; the message names the key."""


def _named(config: SidecarConfig) -> dict[str, str | None]:
    """Each running server's configured authenticator (None: names none)."""
    protocols = config.receivers.otlp.protocols
    servers: dict[str, str | None] = {}
    if protocols.grpc is not None:
        servers[GRPC] = protocols.grpc.auth.authenticator if protocols.grpc.auth else None
    if protocols.http is not None:
        servers[HTTP] = protocols.http.auth.authenticator if protocols.http.auth else None
    metrics = config.service.telemetry.metrics
    servers[ADMIN] = metrics.auth.authenticator if metrics.auth else None
    return servers


def check_auth(config: SidecarConfig) -> None:
    listed = config.service.extensions
    for name in listed:
        if name not in config.extensions:
            raise AuthConfigError(f"service.extensions: {name!r} is not configured under extensions")
    for name in config.extensions:
        if name not in listed:
            raise AuthConfigError(
                f"extensions.{name}: configured but not enabled; add it to service.extensions "
                "(an authenticator left out would leave every server open)"
            )
    named = _named(config)
    for server, authenticator in named.items():
        if authenticator is not None and authenticator not in config.extensions:
            raise AuthConfigError(f"{server}.auth.authenticator: {authenticator!r} is not configured under extensions")
    unnamed = [name for name in listed if name not in named.values()]
    if unnamed and None not in named.values():
        raise AuthConfigError(
            f"service.extensions: {unnamed[0]!r} is checked by no server (each names another authenticator)"
        )
    if len(unnamed) > 1:
        raise AuthConfigError(
            f"service.extensions: {', '.join(unnamed)} are named by no server, so which one guards the "
            "others is ambiguous; name one with `auth: {authenticator: ...}` on each server"
        )


def server_authenticators(config: SidecarConfig) -> dict[str, str | None]:
    """Server (GRPC, HTTP, ADMIN) -> the extension that checks it, None for an open server."""
    named = _named(config)
    unnamed = [name for name in config.service.extensions if name not in named.values()]
    fallback = unnamed[0] if len(unnamed) == 1 else None
    return {server: authenticator or fallback for server, authenticator in named.items()}


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def unguarded_public_servers(config: SidecarConfig) -> list[str]:
    """Warnings for servers that listen beyond loopback with no authenticator: anyone who can
    reach the address can send spans, spend budget or read /metrics and /survival."""
    protocols = config.receivers.otlp.protocols
    endpoints = {ADMIN: config.service.telemetry.metrics.address}
    if protocols.grpc is not None:
        endpoints[GRPC] = protocols.grpc.endpoint
    if protocols.http is not None:
        endpoints[HTTP] = protocols.http.endpoint
    guarded = server_authenticators(config)
    warnings = []
    for server, endpoint in endpoints.items():
        host = endpoint.rpartition(":")[0].strip("[]")
        if host not in _LOOPBACK and not guarded.get(server):
            what = "/metrics and /survival (tenants, spend)" if server == ADMIN else "spans and budget checks"
            warnings.append(
                f"{server} listens on {endpoint} without auth: {what} are open to anyone who can reach it; "
                f"set {server}.auth.authenticator"
            )
    return warnings

"""Value types shared by component configs: durations and endpoints, Collector style."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """'5s', '100ms', '1m', '1h' (Go style, as the Collector takes them) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '5s' or a number of seconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: use a number with a unit, like '5s' or '250ms'")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def split_host_port(endpoint: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); raises ValueError with a clear reason."""
    if "://" in endpoint:
        raise ValueError(f"endpoint {endpoint!r} must be host:port, without a scheme")
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not host:
        raise ValueError(f"endpoint {endpoint!r} must be host:port")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"endpoint {endpoint!r} has an invalid port")
    return host, int(port_text)


def _check_listen_endpoint(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("endpoint must be a string 'host:port'")
    split_host_port(value)
    return value


ListenEndpoint = Annotated[str, BeforeValidator(_check_listen_endpoint)]


def normalize_grpc_target(value: str) -> tuple[str, bool | None]:
    """An OTLP gRPC exporter endpoint -> (host:port, insecure implied by scheme or None)."""
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {value!r}: use host:port or http(s)://host:port")
        port = parts.port or (443 if parts.scheme == "https" else 4317)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"{host}:{port}", parts.scheme == "http"
    split_host_port(value)
    return value, None


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {value!r} must be an http(s):// URL")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {value!r} has an invalid port") from exc
    return value.rstrip("/")


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)

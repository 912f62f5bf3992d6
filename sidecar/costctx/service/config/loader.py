"""Load, expand and validate a config file into typed component configs.

Errors become one ConfigError whose message names the key, e.g.
`exporters.otlp.timeout: invalid duration 'soon'`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from costctx.config.types import split_host_port
from costctx.service.config.auth import AuthConfigError, check_auth
from costctx.service.config.model import SIGNALS, SidecarConfig
from costctx.service.registry import EXPORTER_TYPES, EXTENSION_TYPES

_ENV_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """An invalid config; the message names the offending key."""


# -- ${env:VAR} expansion ----------------------------------------------------------------
def _expand_string(text: str, environ: Mapping[str, str]) -> Any:
    whole = _ENV_REF.fullmatch(text)

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or value == "":
            return default if default is not None else ""
        return value

    expanded = _ENV_REF.sub(substitute, text)
    if whole and whole.group(0) != "$$":
        # As the Collector does: a value that is one whole reference takes the YAML type
        # of what it expands to, so `port: ${env:PORT}` is an int.
        try:
            parsed = yaml.safe_load(expanded) if expanded else None
        except yaml.YAMLError:
            return expanded
        return parsed if isinstance(parsed, (int, float, bool, str)) or parsed is None else expanded
    return expanded


def expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _expand_string(value, environ)
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    return value


# -- defaults ----------------------------------------------------------------------------
def default_config_dict(environ: Mapping[str, str]) -> dict[str, Any]:
    """The config used when none is given: every default processor, one OTLP exporter."""
    from costctx.service.registry import DEFAULT_TRACE_PROCESSORS

    exporter_name = _env_exporter_type(environ)
    return {
        "receivers": {"otlp": {"protocols": {"grpc": None, "http": None}}},
        "processors": {name: None for name in DEFAULT_TRACE_PROCESSORS},
        "exporters": {exporter_name: {}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": list(DEFAULT_TRACE_PROCESSORS),
                    "exporters": [exporter_name],
                },
                "metrics": {"receivers": ["otlp"], "exporters": [exporter_name]},
                "logs": {"receivers": ["otlp"], "exporters": [exporter_name]},
            }
        },
    }


def _env_exporter_type(environ: Mapping[str, str]) -> str:
    protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower()
    return "otlphttp" if protocol.startswith("http") else "otlp"


def _env_headers(environ: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in environ.get("OTEL_EXPORTER_OTLP_HEADERS", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[key.strip()] = value.strip()
    return headers


# -- validation --------------------------------------------------------------------------
def _format_validation_error(prefix: str, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in (*prefix.split("."), *first["loc"]) if part != "")
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    message = message.removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{loc}: {message}{suffix}"


def _validate_exporters(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, section in raw.items():
        type_name = name.split("/", 1)[0]
        model = EXPORTER_TYPES.get(type_name)
        if model is None:
            raise ConfigError(
                f"exporters.{name}: unknown exporter type {type_name!r} (known: {', '.join(EXPORTER_TYPES)})"
            )
        section = dict(section or {})
        if not section.get("endpoint"):
            env_endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            if not env_endpoint:
                raise ConfigError(
                    f"exporters.{name}.endpoint: required key is missing "
                    "(set it, or the OTEL_EXPORTER_OTLP_ENDPOINT variable)"
                )
            section["endpoint"] = env_endpoint
            section.setdefault("headers", _env_headers(environ))
        try:
            typed[name] = model.model_validate(section)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(f"exporters.{name}", exc)) from None
    return typed


def _validate_processors(raw: dict[str, Any]) -> dict[str, Any]:
    from costctx.service.registry import processor_class, processor_type

    typed: dict[str, Any] = {}
    for name, section in raw.items():
        try:
            cls = processor_class(processor_type(name))
        except KeyError as exc:
            raise ConfigError(f"processors.{name}: {exc.args[0]}") from None
        try:
            typed[name] = cls.config_model.model_validate(section or {})
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(f"processors.{name}", exc)) from None
    return typed


def _validate_extensions(raw: dict[str, Any]) -> dict[str, Any]:
    # Several instances are fine: servers name theirs (`auth: {authenticator: ...}`), and
    # service/config/auth.py refuses any that would run nowhere or be ambiguous.
    typed: dict[str, Any] = {}
    for name, section in raw.items():
        type_name = name.split("/", 1)[0]
        model = EXTENSION_TYPES.get(type_name)
        if model is None:
            raise ConfigError(f"extensions.{name}: unknown extension (known: {', '.join(EXTENSION_TYPES)})")
        try:
            typed[name] = model.model_validate(section or {})
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(f"extensions.{name}", exc)) from None
    return typed


def _check_references(config: SidecarConfig) -> None:
    for signal, pipeline in config.service.pipelines.items():
        where = f"service.pipelines.{signal}"
        for receiver in pipeline.receivers:
            if receiver != "otlp":
                raise ConfigError(f"{where}.receivers: unknown receiver {receiver!r} (known: otlp)")
        for exporter in pipeline.exporters:
            if exporter not in config.exporters:
                raise ConfigError(f"{where}.exporters: {exporter!r} is not defined under exporters")
        for processor in pipeline.processors:
            if processor not in config.processors:
                raise ConfigError(f"{where}.processors: {processor!r} is not defined under processors")
        if signal != "traces" and pipeline.processors:
            raise ConfigError(
                f"{where}.processors: {signal} pass through untouched; processors apply to the traces pipeline only"
            )
    push = config.service.telemetry.metrics.otlp
    if push.exporter is not None and push.exporter not in config.exporters:
        raise ConfigError(
            f"service.telemetry.metrics.otlp.exporter: {push.exporter!r} is not defined under exporters"
        )


def _check_no_loop(config: SidecarConfig) -> None:
    """An exporter aimed at this sidecar's own receiver would forward spans to itself forever."""
    protocols = config.receivers.otlp.protocols
    own = set()
    if protocols.grpc is not None:
        own.add(split_host_port(protocols.grpc.endpoint))
    if protocols.http is not None:
        own.add(split_host_port(protocols.http.endpoint))
    loopbacks = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}
    for name, exporter in config.exporters.items():
        from urllib.parse import urlsplit

        parts = urlsplit(exporter.endpoint if "://" in exporter.endpoint else f"//{exporter.endpoint}")
        target = (parts.hostname or "", parts.port or 0)
        for host, port in own:
            same_host = target[0] == host or (target[0] in loopbacks and host in loopbacks)
            if same_host and target[1] == port and port != 0:
                raise ConfigError(
                    f"exporters.{name}.endpoint: {exporter.endpoint} is this sidecar's own "
                    "receiver; point it at the downstream collector"
                )


def build_config(raw: Any, environ: Mapping[str, str] | None = None) -> SidecarConfig:
    environ = os.environ if environ is None else environ
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping of sections")
    raw = expand_env(raw, environ)
    if not raw:
        raw = default_config_dict(environ)
    try:
        config = SidecarConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error("", exc)) from None
    missing = [s for s in config.service.pipelines if s not in SIGNALS]
    if missing:
        raise ConfigError(f"service.pipelines: unknown pipeline {missing[0]!r}")
    config.exporters = _validate_exporters(config.exporters, environ)
    config.processors = _validate_processors(config.processors)
    config.extensions = _validate_extensions(config.extensions)
    _check_references(config)
    try:
        check_auth(config)
    except AuthConfigError as exc:
        raise ConfigError(str(exc)) from None
    _check_no_loop(config)
    return config


def load_config_text(text: str, environ: Mapping[str, str] | None = None) -> SidecarConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"config: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return build_config(raw, environ)


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> SidecarConfig:
    """Load `path`, or the defaults when `path` is None."""
    if path is None:
        return build_config({}, environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    return load_config_text(text, environ)

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
from urllib.parse import unquote

import yaml
from pydantic import ValidationError

from costctx.config.types import split_host_port
from costctx.exporters.debug.config import DebugExporterConfig
from costctx.service.config.auth import AuthConfigError, check_auth
from costctx.service.config.model import SIGNALS, SidecarConfig
from costctx.service.registry import EXPORTER_TYPES, EXTENSION_TYPES

_ENV_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """An invalid config: one message per error found, each naming the offending key."""

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(messages))


# -- ${env:VAR} expansion ----------------------------------------------------------------
def _expand_string(text: str, environ: Mapping[str, str], unset: list[str] | None = None) -> Any:
    whole = _ENV_REF.fullmatch(text)

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or value == "":
            if default is None and unset is not None:
                unset.append(name)  # named in an error, should the empty value be invalid there
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


def expand_env(value: Any, environ: Mapping[str, str], unset: dict[str, list[str]] | None = None,
               path: str = "") -> Any:
    """Expand references; `unset` collects, per dotted key, the variables that were not set."""
    if isinstance(value, str):
        names: list[str] = []
        expanded = _expand_string(value, environ, names)
        if names and unset is not None:
            unset[path] = names
        return expanded
    if isinstance(value, dict):
        return {k: expand_env(v, environ, unset, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, unset, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    return value


def _name_unset_variables(messages: list[str], unset: dict[str, list[str]]) -> list[str]:
    """`processors.x.wait_duration: invalid duration None` says nothing of the cause when the
    value was `${env:WAIT}` and WAIT is unset: say so."""
    named = []
    for message in messages:
        loc, sep, text = message.partition(": ")
        names = next((n for path, n in unset.items() if loc == path or loc.startswith(path + ".")), None)
        if sep and names:
            variables = ", ".join(f"${{env:{name}}}" for name in names)
            message = f"{loc}: {variables} {'is' if len(names) == 1 else 'are'} not set ({text})"
        named.append(message)
    return named


# -- defaults ----------------------------------------------------------------------------
def default_config_dict(environ: Mapping[str, str]) -> dict[str, Any]:
    """The config used when none is given: every default processor, one OTLP exporter."""
    from costctx.service.registry import DEFAULT_TRACE_PROCESSORS

    # No downstream known: the Collector's answer, a debug exporter that logs what it would send.
    exporter_name = _env_exporter_type(environ) if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() else "debug"
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
            # The variable's values are percent-encoded (`authorization=Bearer%20abc`), as the
            # OpenTelemetry SDKs read it; passed on encoded, a downstream's auth would fail.
            headers[unquote(key.strip())] = unquote(value.strip())
    return headers


# -- validation --------------------------------------------------------------------------
def _format_validation_error(prefix: str, error: ValidationError) -> list[str]:
    """One `key: message` per error pydantic found (all of them, not the first)."""
    messages = []
    for item in error.errors():
        loc = ".".join(str(part) for part in (*prefix.split("."), *item["loc"]) if part != "")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        messages.append(f"{loc}: {message.removeprefix('Value error, ')}")
    return messages


def _validate_exporters(raw: dict[str, Any], environ: Mapping[str, str], errors: list[str]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, section in raw.items():
        type_name = name.split("/", 1)[0]
        model = EXPORTER_TYPES.get(type_name)
        if model is None:
            errors.append(
                f"exporters.{name}: unknown exporter type {type_name!r} (known: {', '.join(EXPORTER_TYPES)})"
            )
            continue
        section = dict(section or {})
        if "endpoint" in model.model_fields and not section.get("endpoint"):
            env_endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            if not env_endpoint:
                errors.append(
                    f"exporters.{name}.endpoint: required key is missing "
                    "(set it, or the OTEL_EXPORTER_OTLP_ENDPOINT variable)"
                )
                continue
            section["endpoint"] = env_endpoint
            section.setdefault("headers", _env_headers(environ))
        try:
            typed[name] = model.model_validate(section)
        except ValidationError as exc:
            errors.extend(_format_validation_error(f"exporters.{name}", exc))
    return typed


def _validate_processors(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    from costctx.service.registry import processor_class, processor_type

    typed: dict[str, Any] = {}
    for name, section in raw.items():
        try:
            cls = processor_class(processor_type(name))
        except KeyError as exc:
            errors.append(f"processors.{name}: {exc.args[0]}")
            continue
        try:
            typed[name] = cls.config_model.model_validate(section or {})
        except ValidationError as exc:
            errors.extend(_format_validation_error(f"processors.{name}", exc))
    return typed


def _validate_extensions(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    # Several instances are fine: servers name theirs (`auth: {authenticator: ...}`), and
    # service/config/auth.py refuses any that would run nowhere or be ambiguous.
    typed: dict[str, Any] = {}
    for name, section in raw.items():
        type_name = name.split("/", 1)[0]
        model = EXTENSION_TYPES.get(type_name)
        if model is None:
            errors.append(f"extensions.{name}: unknown extension (known: {', '.join(EXTENSION_TYPES)})")
            continue
        try:
            typed[name] = model.model_validate(section or {})
        except ValidationError as exc:
            errors.extend(_format_validation_error(f"extensions.{name}", exc))
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
    if push.enabled and config.exporters:
        from costctx.service.telemetry_push import push_exporter_name

        name = push_exporter_name(config)
        if isinstance(config.exporters[name], DebugExporterConfig):
            raise ConfigError(
                f"service.telemetry.metrics.otlp: the {name!r} exporter sends nowhere; "
                "name an otlp or otlphttp exporter in `exporter`"
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

        if not hasattr(exporter, "endpoint"):
            continue  # the debug exporter sends nowhere
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
    unset: dict[str, list[str]] = {}
    raw = expand_env(raw, environ, unset)
    if not raw:
        raw = default_config_dict(environ)
    try:
        config = SidecarConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(*_name_unset_variables(_format_validation_error("", exc), unset)) from None
    # Every section is checked, and every error reported: a user fixes them in one go.
    errors = [f"service.pipelines: unknown pipeline {s!r}" for s in config.service.pipelines if s not in SIGNALS]
    config.exporters = _validate_exporters(config.exporters, environ, errors)
    config.processors = _validate_processors(config.processors, errors)
    config.extensions = _validate_extensions(config.extensions, errors)
    if errors:
        raise ConfigError(*_name_unset_variables(errors, unset))
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
